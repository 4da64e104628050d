"""Issue 2 benchmark: end-to-end `autotag tag` throughput on 200 real ~2 MP JPEGs against a naive
baseline (full PIL decode + resize + PyTorch eager at batch 1) measured in the same run; cold start
and peak memory of a new process tagging one image; then where the time goes (each stage's cost per
image, ONNX Runtime alone, the warm in-process pipeline) and the throughput bound they imply.

Run: .venv/bin/python bench/bench_tagging.py [--images 200] [--repeats 5] [--baseline-images 60]
"""

from __future__ import annotations

import argparse
import os
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

from photo_set import photo_variants

AUTOTAG = str(Path(sys.executable).with_name("autotag"))


def make_photos(folder: Path, n: int) -> list[Path]:
    """n distinct ~2 MP JPEGs (1732x1155) cut from the bundled photos."""
    paths = []
    for i, im in enumerate(photo_variants(n, (1732, 1155), min_crop=0.6)):
        paths.append(folder / f"photo_{i:03d}.jpg")
        im.save(paths[-1], quality=90)
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


def where_time_goes(paths: list[Path]) -> dict[str, float]:
    """Per-image CPU cost of each stage, one thread (median of 3 passes), ONNX Runtime alone on every
    core at the default batch size, and the in-process steady state of Tagger.tag_many (warm)."""
    from autotag.ingest import content_hash, decode_with_info, load_source
    from autotag.pipeline import Tagger

    tagger = Tagger.default()
    side = tagger.encoder.spec.input_size

    def per_image_ms(fn, items) -> tuple[float, list]:
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            out = [fn(x) for x in items]
            runs.append((time.perf_counter() - start) / len(items) * 1000)
        return statistics.median(runs), out

    def read_and_hash(path: Path) -> bytes:
        data = load_source(str(path))
        content_hash(data)
        return data

    read_ms, datas = per_image_ms(read_and_hash, paths)
    decode_ms, ims = per_image_ms(lambda d: decode_with_info(d, min_side=side)[0], datas)
    pre_ms, arrays = per_image_ms(tagger.encoder.preprocess, ims)
    batch = np.stack(arrays[: tagger.settings.batch_size])
    tagger.encoder.run(batch)
    start = time.perf_counter()
    for _ in range(5):
        tagger.encoder.run(batch)
    ort_ips = 5 * len(batch) / (time.perf_counter() - start)
    list(tagger.tag_many(paths[:40]))
    start, cpu = time.perf_counter(), time.process_time()
    list(tagger.tag_many(paths))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"read_hash_ms": read_ms, "decode_ms": decode_ms, "preprocess_ms": pre_ms, "ort_ips": ort_ips,
            "steady_ips": len(paths) / wall, "steady_core_ms": cpu / len(paths) * 1000}


def cli_run(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([AUTOTAG, "tag", *args, "--format", "jsonl"], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--baseline-images", type=int, default=60)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = make_photos(folder, args.images)
        cli_run([str(paths[0])])  # make sure the model is exported before timing
        e2e, base = [], []
        for _ in range(args.repeats):  # interleaved, so that both see the same state of a shared machine
            e2e.append(args.images / cli_run([str(folder)]))
            base.append(naive_baseline(paths[: args.baseline_images]))
        cold = []
        for _ in range(5):
            cold.append(cli_run([str(paths[1])]))
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        parts = where_time_goes(paths)
    e2e_med, base_med = statistics.median(e2e), statistics.median(base)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    runs = [round(v, 1) for v in e2e]
    print(f"autotag tag, {args.images} JPEGs of 1732x1155 (2.0 MP), whole process: runs {runs} img/s")
    print(f"naive baseline (PIL full decode + PyTorch eager, batch 1): runs {[round(v, 1) for v in base]} img/s")
    ratios = sorted(round(a / b, 2) for a, b in zip(e2e, base, strict=True))
    print(f"median: {e2e_med:.1f} img/s vs {base_med:.1f} img/s -> {e2e_med / base_med:.1f}x; "
          f"ratio per interleaved round {ratios}, median {statistics.median(ratios):.2f}x")
    print(f"cold start, one image, model already exported: median {statistics.median(cold):.2f} s, "
          f"runs {[round(c, 2) for c in cold]}")
    print(f"peak RSS of any child process (the largest autotag run): {peak_mb:.0f} MB")
    cores = os.cpu_count() or 1
    stages = parts["read_hash_ms"] + parts["decode_ms"] + parts["preprocess_ms"]
    ort_core_ms = cores * 1000 / parts["ort_ips"]
    print(f"where the time goes, per image: read+hash {parts['read_hash_ms']:.2f} ms, JPEG draft decode "
          f"{parts['decode_ms']:.2f} ms, preprocess {parts['preprocess_ms']:.2f} ms (one thread each); ONNX "
          f"Runtime alone {parts['ort_ips']:.0f} img/s on {cores} cores = {ort_core_ms:.2f} core-ms")
    print(f"in-process steady state (warm Tagger.tag_many): {parts['steady_ips']:.1f} img/s, "
          f"{parts['steady_core_ms']:.2f} core-ms per image")
    ideal = cores * 1000 / (stages + ort_core_ms)  # every core busy, no overhead at all
    start = statistics.median(cold) - 1 / ideal
    bound = args.images / (start + args.images / ideal)
    print(f"bound with perfect overlap and no overhead: {ideal:.0f} img/s steady; with the {start:.2f} s process "
          f"start, {bound:.0f} img/s for {args.images} images = {bound / base_med:.1f}x the baseline")


if __name__ == "__main__":
    main()
