"""Numbered schema migrations, applied in order when a library is opened.

Each module here is named NNNN_what.py and defines `upgrade(conn)`, which gets a SQLAlchemy
Connection inside a transaction. A migration is frozen once released: it declares its own tables
rather than importing the current schema, so replaying it later gives the same result.
The runner holds a database-wide lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory
transaction lock) while it reads `schema_version` and applies what is missing, so two processes
opening a fresh database at once apply each migration exactly once.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from datetime import UTC, datetime
from types import ModuleType

from autotag.types import AutotagError

# Any constant will do; it only has to be the same in every process that migrates.
PG_MIGRATION_LOCK = 7_357_001


def available() -> list[tuple[int, str, ModuleType]]:
    found = []
    for info in pkgutil.iter_modules(__path__):
        match = re.fullmatch(r"(\d{4})_\w+", info.name)
        if match:
            module = importlib.import_module(f"{__name__}.{info.name}")
            found.append((int(match.group(1)), info.name, module))
    found.sort()
    numbers = [n for n, _, _ in found]
    if numbers != list(range(1, len(numbers) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..N without gaps, found {numbers}")
    return found


def apply_migrations(engine, upto: int | None = None) -> int:
    """Bring the database to the newest schema (or to version `upto`); returns the version in place."""
    from sqlalchemy import text

    migrations = available()
    if upto is not None:
        migrations = migrations[:upto]
    latest = migrations[-1][0] if migrations else 0
    with engine.connect() as conn:
        conn = conn.execution_options(autotag_write=True)
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATION_LOCK})
            conn.execute(
                text(
                    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY,"
                    " name VARCHAR(200) NOT NULL, applied_at VARCHAR(40) NOT NULL)"
                )
            )
            current = conn.execute(text("SELECT MAX(version) FROM schema_version")).scalar() or 0
            if current > latest:
                raise AutotagError(
                    f"the library's schema version {current} is newer than this autotag knows ({latest}); "
                    "upgrade autotag"
                )
            for number, name, module in migrations:
                if number <= current:
                    continue
                module.upgrade(conn)
                conn.execute(
                    text("INSERT INTO schema_version (version, name, applied_at) VALUES (:v, :n, :t)"),
                    {"v": number, "n": name, "t": datetime.now(UTC).isoformat()},
                )
    return latest
