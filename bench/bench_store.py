"""Image library (autotag.store) throughput: crash-safe ingest and tag search, SQLite vs PostgreSQL.

Every ingest is one transaction (image + 10 predictions + 2 user tags), as the API and the
kill-9 test use it. Tag search pages through `list_images(tag=...)` + `count_images(tag=...)` for
a common tag (~10% of images) and a rare one (~0.3%). PostgreSQL is a throwaway local server
(autotag.testing.postgres) with fsync off, so its figures are an upper bound.

    nice -n 10 .venv/bin/python bench/bench_store.py --images 3000
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime

import numpy as np

from autotag.store import open_store
from autotag.testing.postgres import TempPostgres, postgres_bindir
from autotag.types import Tag

VOCAB = 300


def tag_ids(start: int, count: int) -> np.ndarray:
    """10 distinct tags per image, drawn with Zipf-like popularity (weight 1/rank)."""
    rng = np.random.default_rng(start)
    weights = 1 / np.arange(1, VOCAB + 1)
    return np.stack([rng.choice(VOCAB, 10, replace=False, p=weights / weights.sum()) for _ in range(count)])


def ingest(lib, start: int, count: int, threads: int) -> float:
    """Images per second when `threads` writers ingest `count` images between them."""
    ids = tag_ids(start, count)

    def work(part: range) -> None:
        for i in part:
            tags = [Tag(f"tag{k}", 0.9 - 0.05 * r, f"n{k:08d}") for r, k in enumerate(ids[i])]
            lib.ingest(f"{start + i:064x}", f"/photos/{start + i}.jpg", width=640, height=480, format="JPEG",
                       size_bytes=100_000, model="bench", tags=tags, user_tags=["holiday", f"u{i % 50}"])  # fmt: skip

    started = time.perf_counter()
    workers = [threading.Thread(target=work, args=(range(t, count, threads),)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return count / (time.perf_counter() - started)


def search_ms(lib, tag: str, repeats: int = 20) -> float:
    times = []
    for r in range(repeats):
        started = time.perf_counter()
        lib.list_images(tag=tag, limit=50, offset=50 * (r % 3))
        lib.count_images(tag=tag)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def run(name: str, url: str, images: int) -> dict:
    with open_store(url) as lib:
        one = ingest(lib, 0, images // 2, threads=1)
        four = ingest(lib, images // 2, images - images // 2, threads=4)
        drawn = np.concatenate([tag_ids(0, images // 2), tag_ids(images // 2, images - images // 2)])
        share = np.bincount(drawn.ravel(), minlength=VOCAB) / images
        common_tag, rare_tag = (f"tag{int(np.abs(share - target).argmin())}" for target in (0.10, 0.005))
        counts = {"common": lib.count_images(tag=common_tag), "rare": lib.count_images(tag=rare_tag)}
        common, rare = search_ms(lib, common_tag), search_ms(lib, rare_tag)
    print(
        f"{name:10s} ingest 1 writer {one:7.0f} img/s | 4 writers {four:7.0f} img/s ({four / one:.2f}x) | "
        f"tag search+count: common tag ({counts['common']} imgs) {common:5.1f} ms, "
        f"rare ({counts['rare']}) {rare:5.1f} ms"
    )
    return {"one": one, "four": four, "common": common, "rare": rare}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000)
    args = parser.parse_args()
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}, "
          f"{args.images} images per backend")  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        sqlite = run("SQLite", f"{folder}/bench.db", args.images)
    if postgres_bindir() is None:
        print("PostgreSQL: skipped (apt-get install postgresql)")
        return
    with TempPostgres() as server:
        pg = run("PostgreSQL", server.create_database(), args.images)
    print(f"PostgreSQL/SQLite: ingest 1 writer {pg['one'] / sqlite['one']:.2f}x, "
          f"4 writers {pg['four'] / sqlite['four']:.2f}x, common-tag search {sqlite['common'] / pg['common']:.2f}x "
          f"faster, rare {sqlite['rare'] / pg['rare']:.2f}x faster")  # fmt: skip


if __name__ == "__main__":
    main()
