"""The image library's database: SQLite by default, PostgreSQL by URL, behind one class (`Store`).

This package is the only code that speaks SQL: `records` (what comes back), `engine` (connecting),
`queries` (prebuilt statements), `database` (the Store), `schema` and numbered `migrations`.
SQLAlchemy is imported lazily so that importing `autotag.store` stays cheap; `open_store` is the way in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autotag.store.database import Store

__all__ = [
    "FEEDBACK_ACTIONS",
    "Store",
    "StoredFeedback",
    "StoredImage",
    "StoredModel",
    "StoredPrediction",
    "open_store",
]

FEEDBACK_ACTIONS = ("accepted", "rejected", "added")


def open_store(db: str | None = None, *, create: bool = True, **settings_overrides: Any) -> Store:
    """Open (creating and migrating if needed; with create=False an existing one only) the database at `db`.

    None -> the default SQLite file in settings.data_dir; a path or sqlite:/// URL -> SQLite in WAL
    mode; postgresql://user:pw@host:port/name -> PostgreSQL through psycopg 3.
    """
    from autotag.store.database import Store

    return Store.open(db, create=create, **settings_overrides)


def __getattr__(name: str) -> Any:
    if name == "Store":
        from autotag.store.database import Store

        return Store
    if name in {"StoredFeedback", "StoredImage", "StoredModel", "StoredPrediction"}:
        from autotag.store import records

        return getattr(records, name)
    raise AttributeError(name)
