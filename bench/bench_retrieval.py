"""Fashion-MNIST retrieval: raw embeddings vs the learned retrieval head (three losses).

Queries are test-set images, the gallery is a seeded class-balanced subset of the train set; the head
is trained on the gallery's labels only. Prints mean precision@10 and mAP@10 (AP over the top 10,
normalised by the hits found there) for raw embeddings and each loss, plus training time.
Embeddings are computed once with the real ONNX encoder and cached under .cache/bench/.

    nice -n 10 .venv/bin/python bench/bench_retrieval.py --train 3000 --test 1000
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def balanced_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per = n // len(classes)
    return np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == c), per, replace=False) for c in classes]))


def embed_fashion(split: str, n: int, seed: int, encoder_name: str) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings, labels) of a seeded balanced subset of a Fashion-MNIST split, cached on disk."""
    from autotag.data.fashion_mnist import read_fashion_mnist

    cache = ROOT / ".cache" / "bench" / f"fmnist_{encoder_name}_{split}_{n}_{seed}.npz"
    if cache.is_file():
        data = np.load(cache)
        return data["x"], data["y"]
    from PIL import Image

    from autotag.encoders import create_encoder

    images, labels = read_fashion_mnist(None, split)
    idx = balanced_subset(labels, n, seed)
    encoder = create_encoder(encoder_name)
    out = []
    t0 = time.perf_counter()
    for start in range(0, len(idx), 64):
        chunk = idx[start : start + 64]
        batch = np.stack([encoder.preprocess(Image.fromarray(images[i]).convert("RGB")) for i in chunk])
        out.append(encoder.run(batch)[1])
    x = np.concatenate(out).astype(np.float32)
    print(f"embedded {len(idx)} {split} images in {time.perf_counter() - t0:.0f} s")
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, x=x, y=labels[idx])
    return x, labels[idx]


def main() -> None:
    from autotag.index.learned import RETRIEVAL_LOSSES, precision_at_k, train_retrieval_head

    parser = argparse.ArgumentParser()
    parser.add_argument("--train", type=int, default=3000, help="gallery / training images (balanced)")
    parser.add_argument("--test", type=int, default=1000, help="query images from the test split (balanced)")
    parser.add_argument("--encoder", default="efficientnet_lite0")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--losses", default=",".join(RETRIEVAL_LOSSES.names()))
    args = parser.parse_args()

    xg, yg = embed_fashion("train", args.train, 0, args.encoder)
    xq, yq = embed_fashion("test", args.test, 1, args.encoder)
    p_raw, map_raw = precision_at_k(xq, yq, xg, yg, 10)
    print(f"gallery {len(xg)} train images, {len(xq)} test queries, encoder {args.encoder}")
    print(f"{'method':14s} {'p@10':>6s} {'mAP@10':>7s} {'train s':>8s}")
    print(f"{'raw':14s} {p_raw:6.3f} {map_raw:7.3f} {'-':>8s}")
    for loss in args.losses.split(","):
        t0 = time.perf_counter()
        head = train_retrieval_head(xg, yg, loss=loss, epochs=args.epochs, seed=0)
        elapsed = time.perf_counter() - t0
        p, m = precision_at_k(head(xq), yq, head(xg), yg, 10)
        print(f"{'head/' + loss:14s} {p:6.3f} {m:7.3f} {elapsed:8.1f}   (p@10 {p / p_raw:.3f}x raw)")


if __name__ == "__main__":
    main()
