"""`autotag` in a fresh process, as a user runs it, for tests and benchmarks: one command, and a
server started and waited for until it answers /healthz.

The process also knows the fake encoder (registered, not chosen: AUTOTAG_MODEL or --model picks it).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

_MAIN = "from autotag.testing.fake import register_fake_encoder as r; r(); from autotag.cli import main; main()"


def autotag_command(*args: str) -> list[str]:
    """The argv of `autotag ARGS...` run by this Python."""
    return [sys.executable, "-c", _MAIN, *args]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    args: Sequence[str],
    *,
    port: int,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    stderr: IO[Any] | int = subprocess.PIPE,
    timeout: float = 90,
) -> subprocess.Popen:
    """`autotag serve --host 127.0.0.1 --port PORT ARGS...`, returned once /healthz answers 200.
    Raises RuntimeError (with the end of the server's stderr when it was piped) if it exits or never answers."""
    import httpx

    command = autotag_command("serve", "--host", "127.0.0.1", "--port", str(port), *args)
    proc = subprocess.Popen(command, env=dict(env) if env is not None else None, cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=stderr)  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            detail = proc.stderr.read().decode()[-2000:] if proc.stderr else ""
            raise RuntimeError(f"the server exited with code {proc.returncode}: {detail}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"the server did not answer in {timeout:.0f} s")


# Starts argv, waits for it, reports its own peak RSS (KiB) and CPU seconds on a last stderr line.
_MEASURE = (
    "import os, subprocess, sys; p = subprocess.Popen(sys.argv[1:]); _, s, u = os.wait4(p.pid, 0); "
    "print(u.ru_maxrss, u.ru_utime + u.ru_stime, file=sys.stderr); sys.exit(os.waitstatus_to_exitcode(s))"
)


def run_measured(
    argv: Sequence[str], env: Mapping[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[bytes], float, float]:
    """Run `argv` to its end: (the finished process, stdout and stderr captured, the measuring line taken
    off stderr; argv's peak RSS in MB; its CPU seconds, user + system, all threads). A child forked from a
    large process (pytest, a benchmark holding PyTorch) inherits that process's peak RSS even across
    exec, so a small go-between starts argv and reports argv's own."""
    proc = subprocess.run([sys.executable, "-c", _MEASURE, *argv], capture_output=True,
                          env=dict(env) if env is not None else None)  # fmt: skip
    before, _, last = proc.stderr.rstrip().rpartition(b"\n")
    maxrss_kb, cpu = last.split()
    proc.stderr = before
    return proc, int(maxrss_kb) / 1024, float(cpu)
