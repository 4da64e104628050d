"""Connecting: what a user typed after --db -> a SQLAlchemy engine set up for safe concurrent writes.

On SQLite every write transaction is BEGIN IMMEDIATE (it takes the write lock up front and waits for
it up to the busy timeout), which avoids the deadlock where two readers both try to upgrade to writers.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url

from autotag.types import AutotagError

SQLITE_BUSY_TIMEOUT_MS = 30_000



class NoLibrary(AutotagError):
    """A command that only reads a library was pointed at one that does not exist."""

def resolve_url(db: str | None, data_dir: Path) -> URL:
    """Turn what a user typed after --db into a SQLAlchemy URL (psycopg 3 for PostgreSQL). A SQLite
    path is made absolute, so the library and the files beside it are found from any working folder."""
    if db is None or db == "":
        return URL.create("sqlite", database=str((data_dir / "library.db").absolute()))
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", db):
        try:
            url = make_url(db)
        except sa.exc.ArgumentError as exc:
            raise AutotagError(f"--db {db!r} is not a valid database URL: {exc}") from exc
        backend = url.get_backend_name()
        if backend in ("postgresql", "postgres"):
            return url.set(drivername="postgresql+psycopg")
        if backend == "sqlite" and url.database and url.database != ":memory:":
            return url.set(drivername="sqlite", database=str(Path(url.database).expanduser().absolute()))
        raise AutotagError(
            f"--db {url.render_as_string(hide_password=True)!r}: unsupported database; "
            "give a SQLite file path or a postgresql://user:password@host:port/name URL"
        )
    return URL.create("sqlite", database=str(Path(db).expanduser().absolute()))


def create_engine(url: URL, data_dir: Path, *, create: bool = True) -> tuple[Engine, Path]:
    """The engine for `url` and the folder kept beside the database for its vector index.
    create=False: a SQLite file that does not exist is an error (read-only commands never make one)."""
    if url.get_backend_name() == "sqlite":
        path = Path(url.database or "")
        if path.is_dir():
            raise AutotagError(f"--db {path} is a folder; give a database file path such as {path}/library.db")
        if not create and not path.is_file():
            raise NoLibrary(f"no library at {path}; check --db, or make one with `autotag index PHOTOS --db {path}`")
        path.parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            pool_size=8,
            max_overflow=24,
        )
        _configure_sqlite(engine)
        return engine, path.parent / f"{path.stem}.index"
    engine = sa.create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=24)
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{url.database}@{url.host or 'local'}_{url.port or 5432}")
    return engine, data_dir.absolute() / "postgresql-index" / name


def _retry_while_locked(statement: Any) -> None:
    """Run `statement`, retrying for up to the busy timeout while SQLite says the database is locked.

    Switching a fresh file to WAL needs an exclusive lock, and SQLite answers "database is locked" at
    once there instead of waiting through the busy timeout: two processes opening a new library at the
    same moment failed about one time in five.
    """
    import sqlite3
    import time

    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            statement()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module so BEGIN IMMEDIATE is ours to issue.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        _retry_while_locked(lambda: cursor.execute("PRAGMA journal_mode=WAL"))
        # In WAL mode NORMAL never corrupts and loses no committed transaction when a process dies;
        # only a power cut may drop the last few.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("autotag_write")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
