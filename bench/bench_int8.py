"""INT8 vs float EfficientNet-Lite0 in one run: speed, agreement, embedding cosine, a linear head.

    nice -n 10 .venv/bin/python bench/bench_int8.py                 # the shipped recipe
    nice -n 10 .venv/bin/python bench/bench_int8.py --compare       # several recipes side by side

Held-out images are crops/transforms of photos that are NOT in the calibration set
(autotag.encoders.quantized.HELD_OUT_PHOTOS), drawn with a different seed.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import numpy as np

from autotag.demo import bundled_photo
from autotag.encoders.base import Encoder, preprocess
from autotag.encoders.efficientnet_lite import ensure_onnx, spec_for
from autotag.encoders.quantized import (
    DEFAULT_RECIPE,
    FASHION_MNIST_DIR,
    HELD_OUT_PHOTOS,
    augment,
    create_int8_encoder,
    read_idx_images,
)

NAME = "efficientnet_lite0"
THRESHOLDS = {
    "confident_top1": 0.98,
    "top5_overlap": 0.90,
    "cosine_mean": 0.99,
    "head_drop_points": 0.5,
    "speedup": 1.5,
}


def held_out_batch(per_photo: int, seed: int = 12345) -> np.ndarray:
    rng = np.random.default_rng(seed)
    spec = spec_for(NAME)
    images = []
    for name in HELD_OUT_PHOTOS:
        photo = bundled_photo(name)
        images.append(photo)
        images += [augment(photo, rng) for _ in range(per_photo - 1)]
    return np.stack([preprocess(im, spec) for im in images])


def fashion_batches(n_train: int, n_test: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    import gzip

    from PIL import Image

    def labels(path, count):
        with gzip.open(path, "rb") as f:
            f.read(8)
            return np.frombuffer(f.read(count), np.uint8).astype(int)

    spec = spec_for(NAME)

    def prep(arr):
        return np.stack([preprocess(Image.fromarray(a).convert("RGB"), spec) for a in arr])

    d = FASHION_MNIST_DIR
    return (
        prep(read_idx_images(d / "train-images-idx3-ubyte.gz", n_train)),
        labels(d / "train-labels-idx1-ubyte.gz", n_train),
        prep(read_idx_images(d / "t10k-images-idx3-ubyte.gz", n_test)),
        labels(d / "t10k-labels-idx1-ubyte.gz", n_test),
    )


def run_all(encoder: Encoder, batch: np.ndarray, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    outs = [encoder.run(batch[i : i + size]) for i in range(0, len(batch), size)]
    return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def agreement(ref_logits, ref_emb, logits, emb) -> dict[str, float]:
    p_ref = softmax(ref_logits)
    confident = p_ref.max(1) >= 0.5
    top1_ref, top1 = ref_logits.argmax(1), logits.argmax(1)
    top5_ref, top5 = np.argsort(-ref_logits, 1)[:, :5], np.argsort(-logits, 1)[:, :5]
    overlap = np.array([len(set(a) & set(b)) / 5 for a, b in zip(top5_ref, top5, strict=True)])
    cos = (ref_emb * emb).sum(1) / (np.linalg.norm(ref_emb, axis=1) * np.linalg.norm(emb, axis=1))
    return {
        "n": len(ref_logits),
        "n_confident": int(confident.sum()),
        "confident_top1": float((top1_ref == top1)[confident].mean()),
        "all_top1": float((top1_ref == top1).mean()),
        "top5_overlap": float(overlap.mean()),
        "cosine_mean": float(cos.mean()),
        "cosine_worst": float(cos.min()),
    }


def throughput(encoders: dict[str, Encoder], batch: np.ndarray, rounds: int) -> dict[str, float]:
    """Images/s per encoder at batch 32, interleaved so load from other users hits both alike."""
    x = batch[:32]
    for enc in encoders.values():
        enc.run(x)
    best = {k: 0.0 for k in encoders}
    for _ in range(rounds):
        for key, enc in encoders.items():
            t0 = time.perf_counter()
            enc.run(x)
            best[key] = max(best[key], len(x) / (time.perf_counter() - t0))
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--compare", action="store_true", help="also try other recipes")
    parser.add_argument("--per-photo", type=int, default=40)
    parser.add_argument("--fashion-train", type=int, default=3000)
    parser.add_argument("--fashion-test", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()

    recipes = {"shipped": DEFAULT_RECIPE}
    if args.compare:
        recipes.update(
            {
                "qoperator stem+head float": replace(DEFAULT_RECIPE, keep_float="stem+head"),
                "qoperator percentile calibration": replace(DEFAULT_RECIPE, calibration="percentile"),
                "qoperator symmetric activations": replace(DEFAULT_RECIPE, symmetric_activations=True),
                "qdq u8s8 7-bit weights": replace(DEFAULT_RECIPE, quant_format="qdq"),
                "qdq u8s8 stem+head float": replace(DEFAULT_RECIPE, quant_format="qdq", keep_float="stem+head"),
                "qdq u8u8 8-bit weights": replace(
                    DEFAULT_RECIPE, quant_format="qdq", weight_type="uint8", reduce_range=False
                ),
                "qdq s8s8 8-bit weights": replace(
                    DEFAULT_RECIPE, quant_format="qdq", activation_type="int8", reduce_range=False
                ),
            }
        )
    float_enc = Encoder(spec_for(NAME), ensure_onnx(NAME), threads=2)
    t0 = time.perf_counter()
    int8 = {key: create_int8_encoder(NAME, recipe, threads=2) for key, recipe in recipes.items()}
    print(f"quantise (or load cached) {len(recipes)} recipe(s): {time.perf_counter() - t0:.1f}s")

    held = held_out_batch(args.per_photo)
    ref = run_all(float_enc, held)
    fashion = fashion_batches(args.fashion_train, args.fashion_test) if args.fashion_train else None
    if fashion is not None:
        from sklearn.linear_model import LogisticRegression

        x_train, y_train, x_test, y_test = fashion
        _, emb_train = run_all(float_enc, x_train)
        _, emb_test_float = run_all(float_enc, x_test)
        head = LogisticRegression(C=0.5, max_iter=2000).fit(emb_train, y_train)
        head_float = float((head.predict(emb_test_float) == y_test).mean())

    speeds = throughput({"float": float_enc, **int8}, held, args.rounds)
    results = {}
    for key, enc in int8.items():
        row = agreement(*ref, *run_all(enc, held))
        row["speedup"] = speeds[key] / speeds["float"]
        row["images_per_s"] = speeds[key]
        if fashion is not None:
            _, emb_test_int8 = run_all(enc, x_test)
            row["head_float_acc"] = head_float
            row["head_int8_acc"] = float((head.predict(emb_test_int8) == y_test).mean())
            row["head_drop_points"] = 100 * (head_float - row["head_int8_acc"])
        results[key] = row
    print(f"float: {speeds['float']:.1f} images/s (batch 32, 2 threads)")
    for key, row in results.items():
        passed = (
            row["confident_top1"] >= THRESHOLDS["confident_top1"]
            and row["top5_overlap"] >= THRESHOLDS["top5_overlap"]
            and row["cosine_mean"] >= THRESHOLDS["cosine_mean"]
            and row.get("head_drop_points", 99) <= THRESHOLDS["head_drop_points"]
            and row["speedup"] >= THRESHOLDS["speedup"]
        )
        row["meets_default_bar"] = passed
        print(f"{key}: {json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})}")


if __name__ == "__main__":
    main()
