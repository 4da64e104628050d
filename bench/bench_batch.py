"""Issue 8 benchmark: `autotag batch` images/s with --engine local and --engine ray on the same
2,000 real-photo JPEGs in one run, and the hours 10 million images would take per 16-core node.

Run: nice -n 10 .venv/bin/python bench/bench_batch.py [--images 2000] [--shard-size 250]

The photos are crops/flips/scales of the bundled real photos, saved as 1024x683 JPEGs (a typical
web-gallery size). Ray runs on a local instance with as many CPUs as the machine has; its start-up
(ray.init) is timed separately, its actor start-up and model loads count in its rate.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from autotag.distributed import BatchJob, run_batch
from photo_set import photo_variants

TARGET_IMAGES = 10_000_000
NODE_CORES = 16


def make_photos(folder: Path, n: int) -> None:
    for i, im in enumerate(photo_variants(n, (1024, 683), min_crop=0.5)):
        (folder / f"{i // 500:02d}").mkdir(exist_ok=True)
        im.save(folder / f"{i // 500:02d}" / f"photo_{i:05d}.jpg", quality=88)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--shard-size", type=int, default=250)
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    job = BatchJob(shard_size=args.shard_size)
    with tempfile.TemporaryDirectory() as tmp:
        photos = Path(tmp) / "photos"
        photos.mkdir()
        make_photos(photos, args.images)
        warm = [str(p) for p in sorted(photos.rglob("*.jpg"))[:20]]
        run_batch(warm, str(Path(tmp) / "warm"), engine="local", job=job)  # ONNX export and caches, untimed

        local = run_batch([str(photos)], str(Path(tmp) / "local"), engine="local", job=job)

        import ray

        start = time.perf_counter()
        ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
        ray_init_s = time.perf_counter() - start
        ray_run = run_batch([str(photos)], str(Path(tmp) / "ray"), engine="ray", job=job)
        ray.shutdown()

        import pyarrow.parquet as pq

        a = pq.read_table(str(Path(tmp) / "local"), columns=["path", "content_hash", "tags"])
        b = pq.read_table(str(Path(tmp) / "ray"), columns=["path", "content_hash", "tags"])
        def names(table):  # tag names per image, in order
            return [[t["name"] for t in row or []] for row in table["tags"].to_pylist()]

        same_tags = names(a) == names(b)

    result = {
        "images": args.images,
        "shard_size": args.shard_size,
        "cores": cores,
        "cpu": platform.processor() or platform.machine(),
        "load_average_after": os.getloadavg(),
        "local_images_per_s": local["images_per_second"],
        "local_seconds": local["seconds"],
        "ray_images_per_s": ray_run["images_per_second"],
        "ray_seconds": ray_run["seconds"],
        "ray_init_seconds": round(ray_init_s, 2),
        "ray_over_local": round(ray_run["images_per_second"] / local["images_per_second"], 3),
        "failed": [local["failed"], ray_run["failed"]],
        "identical_paths_hashes_tag_names": bool(same_tags and a["content_hash"].equals(b["content_hash"])),
    }
    for engine in ("local", "ray"):
        per_core = result[f"{engine}_images_per_s"] / cores
        result[f"{engine}_per_core"] = round(per_core, 2)
        result[f"{engine}_hours_10M_per_16core_node"] = round(TARGET_IMAGES / (per_core * NODE_CORES) / 3600, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
