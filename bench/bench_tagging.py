"""Issue 2 benchmark: end-to-end `autotag tag` throughput on 200 real ~2 MP JPEGs against a naive
baseline (full PIL decode + resize + PyTorch eager at batch 1) measured in the same run; cold start
and peak memory of a new process tagging one image.

Run: .venv/bin/python bench/bench_tagging.py [--images 200] [--repeats 3] [--baseline-images 60]
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from autotag.demo import PHOTO_NAMES, _photo

AUTOTAG = str(Path(sys.executable).with_name("autotag"))


def make_photos(folder: Path, n: int) -> list[Path]:
    """n distinct ~2 MP JPEGs: crops, flips and scales of the bundled photos, upsampled to 1732x1155."""
    rng = np.random.default_rng(0)
    sources = [Image.fromarray(_photo(name)).convert("RGB") for name in PHOTO_NAMES]
    paths = []
    for i in range(n):
        im = sources[i % len(sources)]
        w, h = im.size
        cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
        x, y = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
        im = im.crop((x, y, x + cw, y + ch)).resize((1732, 1155), Image.BICUBIC)
        if i % 2:
            im = im.transpose(Image.FLIP_LEFT_RIGHT)
        path = folder / f"photo_{i:03d}.jpg"
        im.save(path, quality=90)
        paths.append(path)
    return paths


def naive_baseline(paths: list[Path]) -> float:
    """Images/s of the obvious implementation: full decode, resize, PyTorch eager, one at a time."""
    import torch

    from autotag.encoders.efficientnet_lite import build_torch_model

    model = build_torch_model("efficientnet_lite0")
    start = time.perf_counter()
    for path in paths:
        im = Image.open(path).convert("RGB")
        w, h = im.size
        s = 224 / min(w, h)
        im = im.resize((round(w * s), round(h * s)), Image.BILINEAR)
        left, top = (im.width - 224) // 2, (im.height - 224) // 2
        x = (np.asarray(im.crop((left, top, left + 224, top + 224)), np.float32) - 127) / 128
        with torch.no_grad():
            model(torch.from_numpy(x.transpose(2, 0, 1)[None].copy())).softmax(1)
    return len(paths) / (time.perf_counter() - start)


def cli_run(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([AUTOTAG, "tag", *args, "--format", "jsonl"], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--baseline-images", type=int, default=60)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = make_photos(folder, args.images)
        cli_run([str(paths[0])])  # make sure the model is exported before timing
        e2e = [args.images / cli_run([str(folder)]) for _ in range(args.repeats)]
        base = [naive_baseline(paths[: args.baseline_images]) for _ in range(args.repeats)]
        cold = []
        for _ in range(5):
            cold.append(cli_run([str(paths[1])]))
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    e2e_med, base_med = statistics.median(e2e), statistics.median(base)
    print(f"machine: {platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores")
    runs = [round(v, 1) for v in e2e]
    print(f"autotag tag, {args.images} JPEGs of 1732x1155 (2.0 MP), whole process: runs {runs} img/s")
    print(f"naive baseline (PIL full decode + PyTorch eager, batch 1): runs {[round(v, 1) for v in base]} img/s")
    print(f"median: {e2e_med:.1f} img/s vs {base_med:.1f} img/s -> {e2e_med / base_med:.1f}x")
    print(f"cold start, one image, model already exported: median {statistics.median(cold):.2f} s, "
          f"runs {[round(c, 2) for c in cold]}")
    print(f"peak RSS of any child process (the largest autotag run): {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
