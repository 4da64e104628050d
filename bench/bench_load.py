"""Load test of the HTTP API on loopback: many concurrent clients, a few thousand mixed requests.

Starts `autotag serve` (127.0.0.1 only, a fresh SQLite library in a temporary folder, the default
model, --preload), then:
  1. baseline: 1 client sends a short run of the same request mix (same server, same run);
  2. load: N concurrent clients (default 32) send the mix until --requests are done or --seconds pass.
The mix: tag (upload, nothing stored), ingest (upload; a share are repeats that must dedupe),
similar (by stored id or by upload), get (one image by id, or a page of the library by tag).
Afterwards every image any ingest answered with must be retrievable with its content hash.
Prints throughput, p50/p99 latency per kind, the count of 5xx (must be 0) and the server's peak RSS
(VmHWM from /proc). Exit status 1 if any 5xx, lost image or transport error occurred.

    nice -n 10 .venv/bin/python bench/bench_load.py --clients 32 --requests 3000 --seconds 600
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from autotag.testing.server import free_port
from autotag.testing.server import start_server as start_server_process

MIX = {"tag": 0.30, "ingest": 0.25, "similar": 0.20, "get": 0.25}
PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "camera",
    "coins",
    "moon",
    "page",
    "retina",
    "clock",
    "cat",
)


def photo_pool(n: int, seed: int = 0) -> list[bytes]:
    """n distinct real photos as JPEG bytes: random crops, flips and scales of scikit-image's photos."""
    from skimage import data

    bases = []
    for name in PHOTOS:
        loader = getattr(data, name, None)
        if loader is not None:
            bases.append(Image.fromarray(loader()).convert("RGB"))
    bases.append(Image.fromarray(data.stereo_motorcycle()[0]).convert("RGB"))
    rng = random.Random(seed)
    out: list[bytes] = []
    seen: set[bytes] = set()
    while len(out) < n:
        im = rng.choice(bases)
        w, h = im.size
        cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        crop = im.crop((x, y, x + cw, y + ch))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        scale = rng.uniform(0.8, 1.6)
        crop = crop.resize((max(32, int(cw * scale)), max(32, int(ch * scale))))
        buf = io.BytesIO()
        crop.save(buf, "JPEG", quality=rng.randint(80, 95))
        data_bytes = buf.getvalue()
        if data_bytes not in seen:
            seen.add(data_bytes)
            out.append(data_bytes)
    return out


def start_server(workdir: Path, port: int, extra: list[str]) -> subprocess.Popen:
    env = {**os.environ, "AUTOTAG_DATA_DIR": str(workdir / "data"), "AUTOTAG_API_KEYS": ""}
    args = ["--db", str(workdir / "library.db"), "--preload", "--log-level", "warning", *extra]
    log = open(workdir / "server.log", "wb")  # noqa: SIM115 - the server writes it until the end
    try:
        return start_server_process(args, port=port, env=env, stderr=log, timeout=180)
    except RuntimeError as exc:
        sys.exit(f"{exc}; see {workdir / 'server.log'}")


def proc_memory(pid: int) -> dict[str, float]:
    """Resident set size now and at its peak (VmHWM), in MB, from /proc."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


class Load:
    """Shared state of one run: the photos, what has been ingested, the measurements."""

    def __init__(self, pool: list[bytes], seed: int) -> None:
        self.pool = pool
        self.rng = random.Random(seed)
        self.ingested: dict[int, str] = {}  # id -> content hash, from ingest answers
        self.results: list[tuple[str, int, float]] = []  # (kind, status, seconds)
        self.transport_errors: list[str] = []
        self.tags_seen: list[str] = []

    def pick_kind(self) -> str:
        r, acc = self.rng.random(), 0.0
        for kind, share in MIX.items():
            acc += share
            if r < acc:
                return kind
        return "get"

    async def one(self, client, kind: str) -> None:
        rng = self.rng
        photo = rng.choice(self.pool)
        started = time.perf_counter()
        try:
            if kind == "tag":
                r = await client.post("/v1/tag", files={"file": ("p.jpg", photo, "image/jpeg")})
            elif kind == "ingest":
                r = await client.post("/v1/images", files={"file": ("p.jpg", photo, "image/jpeg")})
                if r.status_code in (200, 201):
                    body = r.json()
                    self.ingested[body["id"]] = body["content_hash"]
                    self.tags_seen.extend(t["name"] for t in body["tags"][:3])
            elif kind == "similar":
                if self.ingested and rng.random() < 0.7:
                    r = await client.post("/v1/similar", data={"id": str(rng.choice(list(self.ingested))), "k": "10"})
                    if r.status_code == 404:  # ids are never deleted in this run, so 404 is a failure
                        self.transport_errors.append(f"similar by id answered 404: {r.text[:200]}")
                else:
                    r = await client.post(
                        "/v1/similar", files={"file": ("p.jpg", photo, "image/jpeg")}, data={"k": "10"}
                    )
            else:
                if self.ingested and rng.random() < 0.6:
                    r = await client.get(f"/v1/images/{rng.choice(list(self.ingested))}")
                else:
                    tag = rng.choice(self.tags_seen) if self.tags_seen else None
                    r = await client.get("/v1/images", params={"limit": 20, **({"tag": tag} if tag else {})})
            status = r.status_code
        except Exception as exc:  # noqa: BLE001 - counted and reported
            self.transport_errors.append(f"{kind}: {type(exc).__name__}: {exc}")
            status = -1
        self.results.append((kind, status, time.perf_counter() - started))

    async def run(self, base: str, clients: int, requests: int, seconds: float) -> float:
        import httpx

        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        deadline = time.monotonic() + seconds
        issued = 0

        async def worker(client) -> None:
            nonlocal issued
            while issued < requests and time.monotonic() < deadline:
                issued += 1
                await self.one(client, self.pick_kind())

        started = time.perf_counter()
        async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
            await asyncio.gather(*(worker(client) for _ in range(clients)))
        return time.perf_counter() - started


def summarize(results: list[tuple[str, int, float]], wall: float) -> dict:
    by_kind: dict[str, list[float]] = defaultdict(list)
    statuses: dict[str, int] = defaultdict(int)
    for kind, status, seconds in results:
        by_kind[kind].append(seconds)
        by_kind["all"].append(seconds)
        statuses[str(status)] += 1
    out = {
        "requests": len(results),
        "seconds": round(wall, 2),
        "throughput_rps": round(len(results) / wall, 2),
        "status_counts": dict(sorted(statuses.items())),
        "server_errors_5xx": sum(1 for _, s, _ in results if s >= 500),
        "latency_ms": {},
    }
    for kind, values in sorted(by_kind.items()):
        arr = np.asarray(values) * 1000
        out["latency_ms"][kind] = {
            "n": len(arr),
            "p50": round(float(np.percentile(arr, 50)), 1),
            "p99": round(float(np.percentile(arr, 99)), 1),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=3000, help="stop after this many requests")
    parser.add_argument("--seconds", type=float, default=600, help="or after this long")
    parser.add_argument("--baseline-requests", type=int, default=100, help="the 1-client run (0: skip)")
    parser.add_argument("--photos", type=int, default=400, help="distinct photos to draw uploads from")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the summary as JSON here")
    parser.add_argument("server_args", nargs="*", help="extra `autotag serve` arguments (after --)")
    args = parser.parse_args()
    if args.clients < 1 or args.requests < 1:
        parser.error("--clients and --requests must be positive")

    import httpx

    pool = photo_pool(args.photos, args.seed)
    with tempfile.TemporaryDirectory(prefix="autotag-load-") as tmp:
        workdir = Path(tmp)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        t0 = time.perf_counter()
        server = start_server(workdir, port, args.server_args)
        startup = time.perf_counter() - t0
        try:
            load = Load(pool, args.seed)
            report: dict = {
                "clients": args.clients,
                "photos": len(pool),
                "startup_s": round(startup, 1),
                "memory_after_start_mb": proc_memory(server.pid),
            }
            if args.baseline_requests:
                wall = asyncio.run(load.run(base, 1, args.baseline_requests, args.seconds))
                report["baseline_1_client"] = summarize(load.results, wall)
                load.results = []
            wall = asyncio.run(load.run(base, args.clients, args.requests, args.seconds))
            report["load"] = summarize(load.results, wall)
            if "baseline_1_client" in report:
                report["throughput_ratio_vs_1_client"] = round(
                    report["load"]["throughput_rps"] / report["baseline_1_client"]["throughput_rps"], 2
                )
            # Every image an ingest answered with must be there, with the same content.
            lost = []
            with httpx.Client(base_url=base, timeout=60) as client:
                for image_id, digest in load.ingested.items():
                    r = client.get(f"/v1/images/{image_id}")
                    if r.status_code != 200 or r.json()["content_hash"] != digest:
                        lost.append(image_id)
                report["library_images"] = client.get("/healthz").json()["images"]
            report["ingested_ids"] = len(load.ingested)
            report["lost_images"] = lost
            report["transport_errors"] = load.transport_errors[:20]
            report["server_memory_mb"] = proc_memory(server.pid)  # VmHWM = peak RSS over the whole run
        finally:
            server.terminate()
            server.wait(timeout=60)
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    failed = report["load"]["server_errors_5xx"] or lost or load.transport_errors
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
