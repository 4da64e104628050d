"""The image library: a real database (SQLite by default, PostgreSQL by URL) behind one class.

This package is the only code that speaks SQL. SQLAlchemy is imported lazily so that importing
`autotag.store` stays cheap; `open_library` is the way in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autotag.store.library import Library

__all__ = [
    "FEEDBACK_ACTIONS",
    "Library",
    "StoredFeedback",
    "StoredImage",
    "StoredModel",
    "StoredPrediction",
    "open_library",
]

FEEDBACK_ACTIONS = ("accepted", "rejected", "added")


def open_library(db: str | None = None, **settings_overrides: Any) -> Library:
    """Open (creating and migrating if needed) the library at `db`.

    None -> the default SQLite file in settings.data_dir; a path or sqlite:/// URL -> SQLite in WAL
    mode; postgresql://user:pw@host:port/name -> PostgreSQL through psycopg 3.
    """
    from autotag.store.library import Library

    return Library.open(db, **settings_overrides)


def __getattr__(name: str) -> Any:
    if name in {"Library", "StoredFeedback", "StoredImage", "StoredModel", "StoredPrediction"}:
        from autotag.store import library

        return getattr(library, name)
    raise AttributeError(name)
