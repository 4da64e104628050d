"""Schemathesis against the service's own OpenAPI schema: every endpoint, generated requests, a real
server (`autotag serve` in a subprocess) holding two real photos so ids 1 and 2 exist.

Checks: all of Schemathesis's but `positive_data_acceptance`, which expects any schema-valid upload to
succeed; a schema cannot say "a decodable image", so random bytes are rightly refused with a 422.
Used by tests/test_api.py (a few examples) and bench/bench_api_schema.py (more, with figures).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from autotag.testing.server import free_port, start_server

KEY = "fuzz-key"
EXCLUDED_CHECKS = ("positive_data_acceptance",)
CONFIG = """\
[dictionaries.stored]
values = [1, 2]

[parameters]
"path.image_id" = { dictionary = "stored", probability = 0.5 }
"""


@dataclass
class FuzzResult:
    label: str
    generated: int  # test cases Schemathesis sent
    failures: list[str]  # one line per failing operation and check
    server_errors: int  # responses with a 5xx status
    seconds: float
    output: str


def _serve(db: Path, data_dir: Path, keys: str, port: int) -> subprocess.Popen:
    env = {**os.environ, "AUTOTAG_DATA_DIR": str(data_dir), "AUTOTAG_API_KEYS": keys}
    return start_server(["--db", str(db), "--log-level", "warning"], port=port, env=env, timeout=120)


def run_schemathesis(
    workdir: Path,
    photos: list[Path],
    *,
    keys_configured: bool,
    send_key: bool,
    max_examples: int = 20,
    seed: int = 1,
) -> FuzzResult:
    """Serve a fresh library holding `photos`, run `st run` against it, return what it found."""
    import httpx

    label = ("keys configured" if keys_configured else "no keys") + (", key sent" if send_key else "")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = _serve(workdir / "lib.db", workdir / "data", KEY if keys_configured else "", port)
    base = f"http://127.0.0.1:{port}"
    headers = {"X-API-Key": KEY} if keys_configured else {}
    try:
        for photo in photos:
            files = {"file": (photo.name, photo.read_bytes(), "image/jpeg")}
            httpx.post(f"{base}/v1/images", files=files, headers=headers, timeout=120).raise_for_status()
        (workdir / "schemathesis.toml").write_text(CONFIG)
        junit = workdir / "junit.xml"
        cmd = [str(Path(sys.executable).parent / "st"), "--config-file", str(workdir / "schemathesis.toml"),
               "run", f"{base}/openapi.json", "--max-examples", str(max_examples),
               "--seed", str(seed), "--exclude-checks", ",".join(EXCLUDED_CHECKS), "--no-color",
               "--report", "junit", "--report-junit-path", str(junit), "--workers", "1"]  # fmt: skip
        if send_key:
            cmd += ["-H", f"X-API-Key: {KEY}"]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, timeout=1800)
        seconds = time.perf_counter() - t0
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    out = done.stdout + done.stderr
    generated = re.search(r"(\d+) generated", out)
    failures = []
    if junit.is_file():
        for case in ET.parse(junit).getroot().iter("testcase"):
            for failure in case.findall("failure"):
                failures.append(f"{case.get('name')}: {(failure.get('message') or '').splitlines()[0][:200]}")
    if done.returncode != 0 and not failures:
        failures.append(f"st exited {done.returncode}")
    server_errors = len(re.findall(r"^\[5\d\d\]", out, flags=re.M))
    return FuzzResult(label, int(generated.group(1)) if generated else 0, failures, server_errors, seconds, out)
