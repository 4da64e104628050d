"""A throwaway PostgreSQL server from the system's binaries, for tests and benchmarks.

    with TempPostgres() as server:
        url = server.create_database()   # postgresql://autotag@127.0.0.1:PORT/autotag_xxxx
        create_database(url)             # another one, from any database URL of the server

Uses Debian's /usr/lib/postgresql/*/bin (apt-get install postgresql). PostgreSQL refuses to run as
root, so as root the server runs as the `postgres` user (or `nobody`) via runuser.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any


def create_database(server_url: str, name: str | None = None) -> str:
    """A new empty database on the server at `server_url` (any of its databases' URLs); returns its URL."""
    import psycopg

    name = name or f"autotag_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + "/" + name


def postgres_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class TempPostgres:
    def __init__(self) -> None:
        self.bindir = postgres_bindir()
        if self.bindir is None:
            raise RuntimeError("PostgreSQL server missing (/usr/lib/postgresql/*/bin): apt-get install postgresql")
        self.root: Path | None = None
        self.url = ""

    def start(self) -> TempPostgres:
        assert self.bindir is not None
        self.root = Path(tempfile.mkdtemp(prefix="autotag-pg-"))  # short: unix socket paths max ~100 bytes
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            import pwd

            owner = "postgres" if "postgres" in {p.pw_name for p in pwd.getpwall()} else "nobody"
            shutil.chown(self.root, owner)
            self._as_user = ["runuser", "-u", owner, "--"]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        data, log = self.root / "data", self.root / "log"
        self._pg_ctl = [*self._as_user, str(self.bindir / "pg_ctl"), "-D", str(data)]
        options = f"-p {port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        try:
            for command in (
                [*self._as_user, str(self.bindir / "initdb"), "-D", str(data), "-U", "autotag", "--auth=trust",
                 "--no-sync"],
                [*self._pg_ctl, "-l", str(log), "-o", options, "-w", "start"],
            ):  # fmt: skip
                done = subprocess.run(command, capture_output=True, text=True, timeout=120)
                if done.returncode != 0:
                    detail = done.stderr + done.stdout + (log.read_text() if log.exists() else "")
                    raise RuntimeError(f"{Path(command[len(self._as_user)]).name} failed: {detail.strip()}")
        except BaseException:
            self.stop()
            raise
        self.url = f"postgresql://autotag@127.0.0.1:{port}/postgres"
        return self

    def create_database(self, name: str | None = None) -> str:
        """A new empty database on this server; returns its URL."""
        return create_database(self.url, name)

    def stop(self) -> None:
        if self.root is None:
            return
        if (self.root / "data" / "postmaster.pid").exists():
            subprocess.run([*self._pg_ctl, "-m", "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def __enter__(self) -> TempPostgres:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
