"""End-to-end `autotag tag` throughput on 200 real ~2 MP JPEGs: the default tagger with the object
detector, `--no-objects` (classifier only) and a naive baseline (full PIL decode + resize + PyTorch eager
at batch 1), interleaved round by round in the same run so all three see the same state of a shared
machine; cold start and peak memory of each `autotag tag` process; then where the time goes (each
stage's cost per image, ONNX Runtime alone for the classifier and the detector, the warm pipeline).

Also the CPU time (user + system) of each `autotag tag` process per image, which a shared machine
inflates less than wall time, and cold start split into import, model loading and the first image.

Run: .venv/bin/python bench/bench_tagging.py [--images 200] [--repeats 5] [--baseline-images 60]
"""

from __future__ import annotations

import argparse
import os
import platform
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


def cli_run(args: list[str]) -> tuple[float, float, float]:
    """Seconds, peak RSS (MB) and CPU seconds (user + system, all threads) of one `autotag tag` process."""
    from autotag.testing.server import run_measured

    start = time.perf_counter()
    # through a go-between: this process holds PyTorch for the baseline, and a child would inherit its peak
    proc, peak_mb, cpu = run_measured([AUTOTAG, "tag", *args, "--format", "jsonl"])
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"autotag tag {' '.join(args)} failed: {proc.stderr.decode()[-2000:]}")
    return seconds, peak_mb, cpu


COLD_START = """
import time
t0 = time.perf_counter()
from autotag.pipeline import Tagger
t1 = time.perf_counter()
tagger = Tagger.load({flags})
t2 = time.perf_counter()
tagger.tag({path!r})
t3 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2)
"""


def cold_split(path: Path, objects: bool) -> tuple[float, float, float]:
    """Seconds of a fresh interpreter to import the pipeline, load the models, tag the first image."""
    code = COLD_START.format(flags="" if objects else "objects=False", path=str(path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    a, b, c = (float(v) for v in out.split())
    return a, b, c


def detector_cost(paths: list[Path]) -> dict[str, float]:
    """The detector's share: letter-boxing per image (one thread) and ONNX Runtime alone on every core."""
    from autotag.ingest import decode_with_info, load_source
    from autotag.pipeline import KEPT_SIDE, Tagger

    tagger = Tagger.default()
    detector = tagger.detector
    ims = [decode_with_info(load_source(str(p)), min_side=224, min_long_side=KEPT_SIDE)[0] for p in paths[:40]]
    start = time.perf_counter()
    inputs = [detector.preprocess(im)[0] for im in ims]
    box_ms = (time.perf_counter() - start) / len(ims) * 1000
    batch = inputs[: tagger.settings.batch_size]
    detector.run(batch[0][None])
    # one picture per run, as the pipeline runs it; CPU time too: the tagger's detector session has one
    # ORT thread (it runs pictures side by side), so cores x wall would overstate its cost
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(3):
        for x in batch:
            detector.run(x[None])
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"letterbox_ms": box_ms, "detector_ips": 3 * len(batch) / wall,
            "detector_core_ms": cpu / (3 * len(batch)) * 1000, "input_size": detector.input_size}


MODES = {"objects": [], "no-objects": ["--no-objects"]}


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
        e2e: dict[str, list[float]] = {m: [] for m in MODES}
        peak: dict[str, list[float]] = {m: [] for m in MODES}
        core_ms: dict[str, list[float]] = {m: [] for m in MODES}
        base = []
        for _ in range(args.repeats):  # interleaved, so that all see the same state of a shared machine
            for mode, flags in MODES.items():
                seconds, rss, cpu = cli_run([str(folder), *flags])
                e2e[mode].append(args.images / seconds)
                peak[mode].append(rss)
                core_ms[mode].append(cpu / args.images * 1000)
            base.append(naive_baseline(paths[: args.baseline_images]))
        cold: dict[str, list[float]] = {m: [] for m in MODES}
        split: dict[str, list[tuple[float, float, float]]] = {m: [] for m in MODES}
        for _ in range(5):
            for mode, flags in MODES.items():
                cold[mode].append(cli_run([str(paths[1]), *flags])[0])
                split[mode].append(cold_split(paths[1], mode == "objects"))
        parts = where_time_goes(paths)
        det = detector_cost(paths)
    base_med = statistics.median(base)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; {time.strftime('%Y-%m-%d')}")
    print(f"{args.images} JPEGs of 1732x1155 (2.0 MP), whole `autotag tag` process, {args.repeats} interleaved rounds")
    print(f"naive baseline (PIL full decode + PyTorch eager, batch 1): runs {[round(v, 1) for v in base]} img/s, "
          f"median {base_med:.1f}")
    for mode in MODES:
        runs, med = [round(v, 1) for v in e2e[mode]], statistics.median(e2e[mode])
        ratios = sorted(round(a / b, 2) for a, b in zip(e2e[mode], base, strict=True))
        print(f"autotag tag ({mode}): runs {runs} img/s, median {med:.1f} = {med / base_med:.1f}x the baseline "
              f"(ratio per round {ratios}, median {statistics.median(ratios):.2f}x); peak RSS median "
              f"{statistics.median(peak[mode]):.0f} MB, max {max(peak[mode]):.0f} MB")
    cores = os.cpu_count() or 1
    for mode in MODES:
        med = statistics.median(core_ms[mode])
        print(f"CPU per image ({mode}, whole process incl. start-up, user + system): median {med:.1f} core-ms, "
              f"runs {[round(v, 1) for v in core_ms[mode]]} -> at most {cores * 1000 / med:.0f} img/s on {cores} "
              f"cores kept busy")
    ratio = [a / b for a, b in zip(e2e["objects"], e2e["no-objects"], strict=True)]
    print(f"objects / no-objects per round: {[round(r, 2) for r in ratio]}, median {statistics.median(ratio):.2f}")
    for mode in MODES:
        print(f"cold start ({mode}), one image, models ready: median {statistics.median(cold[mode]):.2f} s, "
              f"runs {[round(c, 2) for c in cold[mode]]}")
        cold_parts = [statistics.median(s[i] for s in split[mode]) for i in range(3)]
        print(f"  in a fresh interpreter: import the pipeline {cold_parts[0]:.2f} s, load the models "
              f"{cold_parts[1]:.2f} s, tag the image {cold_parts[2]:.2f} s (medians of 5)")
    stages = parts["read_hash_ms"] + parts["decode_ms"] + parts["preprocess_ms"]
    ort_core_ms = cores * 1000 / parts["ort_ips"]
    det_core_ms = det["detector_core_ms"]
    print(f"where the time goes, per image: read+hash {parts['read_hash_ms']:.2f} ms, JPEG draft decode "
          f"{parts['decode_ms']:.2f} ms, preprocess {parts['preprocess_ms']:.2f} ms, letter-box for the detector "
          f"{det['letterbox_ms']:.2f} ms (one thread each); ONNX Runtime alone: classifier {parts['ort_ips']:.0f} "
          f"img/s = {ort_core_ms:.2f} core-ms, detector ({det['input_size']} px) {det['detector_ips']:.0f} img/s = "
          f"{det_core_ms:.2f} core-ms (its own CPU time, one picture per run)")
    print(f"in-process steady state (warm Tagger.tag_many, with objects): {parts['steady_ips']:.1f} img/s, "
          f"{parts['steady_core_ms']:.2f} core-ms per image")
    ideal = cores * 1000 / (stages + det["letterbox_ms"] + ort_core_ms + det_core_ms)
    print(f"bound with perfect overlap and no overhead, with objects: {ideal:.0f} img/s steady")


if __name__ == "__main__":
    main()
