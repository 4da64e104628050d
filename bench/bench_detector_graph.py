"""Two conversions of the COCO detector side by side: same outputs? and ONNX Runtime's CPU time per run.

    python bench/bench_detector_graph.py OLD.onnx NEW.onnx [--photos 8] [--rounds 9] [--threads 1]

Each model runs on the same letter-boxed pictures of the real-photo benchmark (384 px). Outputs: a model
answers either the graph's peak map ("peaks", conversion v2) or the class heatmap ("heat", v3, whose peak
test runs in numpy); both are reduced to the peaks the decode keeps, and the detections of the two models
are compared (class, score, box). Input layout (NHWC or NCHW) is read from the model. Time: CPU seconds of
the process per run (`process_time`, every ORT thread), models interleaved round by round, order reversed
every other round; the median and the minimum over rounds (the least disturbed by other jobs).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from autotag.encoders.detector import decode, letterbox, local_peaks

PHOTOS = Path(".cache/realphotos")


def session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.enable_cpu_mem_arena = False
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run(sess, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(h, w, 80) map whose nonzero cells are the peaks (the graph's own test or numpy's), (h, w, 4) sizes."""
    channels_first = sess.get_inputs()[0].shape[1] == 3
    outputs = dict(zip([o.name for o in sess.get_outputs()],
                       sess.run(None, {"image": x.transpose(2, 0, 1)[None] if channels_first else x[None]}),
                       strict=True))  # fmt: skip
    if "peaks" in outputs:
        return outputs["peaks"][0], outputs["sizes"][0]
    heat = outputs["heat"][0]
    peaks = np.zeros_like(heat).reshape(-1)
    keep = local_peaks(heat, 1e-6)
    peaks[keep] = heat.reshape(-1)[keep]
    return peaks.reshape(heat.shape), outputs["sizes"][0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", type=Path, nargs=2)
    ap.add_argument("--photos", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--size", type=int, default=384)
    args = ap.parse_args()
    files = sorted(p for p in PHOTOS.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))
    pictures = [Image.open(p).convert("RGB") for p in files]
    inputs = [letterbox(im, args.size) for im in pictures]
    sessions = [session(m, args.threads) for m in args.models]
    # outputs on all pictures of the benchmark
    worst_heat = worst_sizes = 0.0
    same = flipped = 0
    for x, placement in inputs:
        (p0, s0), (p1, s1) = (run(s, x) for s in sessions)
        strong = (p0 >= 0.05) & (p1 >= 0.05)  # weaker peaks may come and go where neighbours nearly tie
        flipped += int(((p0 >= 0.05) != (p1 >= 0.05)).sum())
        worst_heat = max(worst_heat, float(np.abs(p0 - p1)[strong].max(initial=0.0)))
        worst_sizes = max(worst_sizes, float(np.abs(s0 - s1).max()))
        d0, d1 = (decode(p, s, placement, args.size, 0.2, 0.4, 0.005) for p, s in ((p0, s0), (p1, s1)))
        same += len(d0) == len(d1) and all(
            a.label == b.label and abs(a.score - b.score) < 1e-4 and np.allclose(a.box, b.box, atol=0.1)
            for a, b in zip(d0, d1, strict=True)
        )
    print(f"{len(inputs)} pictures: peaks of 0.05 or more differ by at most {worst_heat:.2e} ({flipped} cells are one "
          f"in one model only), sizes by {worst_sizes:.2e} px; same detections (class, score within 1e-4, box within "
          f"0.1 px) on {same}")
    feeds = []
    for s in sessions:
        channels_first = s.get_inputs()[0].shape[1] == 3
        feeds.append([(x.transpose(2, 0, 1) if channels_first else x)[None].copy() for x, _ in inputs[: args.photos]])
    times: list[list[float]] = [[] for _ in sessions]
    for r in range(args.rounds):
        order = list(range(len(sessions)))
        for i in order if r % 2 == 0 else order[::-1]:
            start = time.process_time()
            for x in feeds[i]:
                sessions[i].run(None, {"image": x})
            times[i].append((time.process_time() - start) / len(feeds[i]) * 1000)
    for model, t in zip(args.models, times, strict=True):
        print(f"{model}: {statistics.median(t):.1f} core-ms per run (median of {args.rounds}), min {min(t):.1f}, "
              f"{args.threads} thread(s); rounds {[round(v, 1) for v in t]}")
    ratio = [b / a for a, b in zip(*times, strict=True)]
    minima = min(times[1]) / min(times[0])
    print(f"new / old per round: median {statistics.median(ratio):.3f}; of the minima {minima:.3f}")


if __name__ == "__main__":
    main()
