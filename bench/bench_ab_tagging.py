"""Warm in-process tagging speed of two checkouts, interleaved: is a change slower?

Each round runs, for each checkout in turn, a new process that loads `Tagger.default()` from that
checkout's src/, warms it on 16 photos, then times `tag_many` over the same ~2 MP JPEGs three times
(median); so both sides see the same state of a shared machine. Prints img/s and CPU ms per image per
round, the medians and the per-round ratio B/A.

Run: .venv/bin/python bench/bench_ab_tagging.py CHECKOUT_A CHECKOUT_B [--photos 60] [--rounds 6]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_tagging import make_photos

ONE_SIDE = """
import statistics, sys, time
from pathlib import Path
from autotag.pipeline import Tagger
paths = sorted(Path(sys.argv[1]).glob("*.jpg"))
tagger = Tagger.default()
list(tagger.tag_many(paths[:16]))
walls, cpus = [], []
for _ in range(3):
    wall, cpu = time.perf_counter(), time.process_time()
    assert all(item.ok for item in tagger.tag_many(paths))
    walls.append(len(paths) / (time.perf_counter() - wall))
    cpus.append((time.process_time() - cpu) / len(paths) * 1000)
print(statistics.median(walls), statistics.median(cpus))
"""


def run_side(checkout: Path, photos: Path) -> tuple[float, float]:
    env = {**os.environ, "PYTHONPATH": str(checkout / "src")}
    done = subprocess.run([sys.executable, "-c", ONE_SIDE, str(photos)], env=env, cwd=checkout,
                          capture_output=True, text=True, check=True)  # fmt: skip
    ips, cpu_ms = done.stdout.split()[-2:]
    return float(ips), float(cpu_ms)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--photos", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args()
    results: dict[str, list[tuple[float, float]]] = {"A": [], "B": []}
    with tempfile.TemporaryDirectory() as tmp:
        make_photos(Path(tmp), args.photos)
        for round_ in range(1, args.rounds + 1):
            for side, checkout in (("A", args.a), ("B", args.b)):
                results[side].append(run_side(checkout.resolve(), Path(tmp)))
                ips, cpu = results[side][-1]
                print(f"round {round_} {side}: {ips:.2f} img/s, {cpu:.2f} CPU ms/image", flush=True)
    for side in ("A", "B"):
        print(f"{side} median: {statistics.median(r[0] for r in results[side]):.2f} img/s, "
              f"{statistics.median(r[1] for r in results[side]):.2f} CPU ms/image")  # fmt: skip
    ratios = [b[0] / a[0] for a, b in zip(results["A"], results["B"], strict=True)]
    print(f"B/A per round: {[round(r, 2) for r in ratios]}, median {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
