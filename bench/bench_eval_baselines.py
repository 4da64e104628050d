"""Baselines on Fashion-MNIST, all in one run:

1. the default ImageNet model (EfficientNet-Lite0), its 1000 leaf classes folded onto the 10 garment
   classes through autotag.evaluate.FASHION_TO_IMAGENET, on the official 10k test set;
2. a linear head (logistic regression) on frozen embeddings of the first N training images;
3. kNN on raw pixels with the same training images: the same-run baseline the head is compared to.

Encoder outputs go through autotag's embedding cache, so a second run only refits the heads.

    nice -n 10 .venv/bin/python bench/bench_eval_baselines.py --train 10000 --test 10000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=10_000, help="first N Fashion-MNIST training images")
    parser.add_argument("--test", type=int, default=10_000, help="first N test images (10000 = official test set)")
    parser.add_argument("--knn-k", type=int, default=5)
    parser.add_argument("--mosaic", type=Path, default=None, help="also evaluate on this FashionMosaic folder")
    parser.add_argument("--mosaic-test", type=int, default=1000, help="test images of the mosaic to use")
    parser.add_argument("--out", type=Path, default=Path("bench/out/eval_baselines.json"))
    args = parser.parse_args()

    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.preprocessing import StandardScaler

    from autotag import metrics as M
    from autotag.data import FASHION_MNIST_CLASSES, Dataset, load_dataset, read_fashion_mnist
    from autotag.evaluate import FASHION_TO_IMAGENET, default_model_scores, encode_records
    from autotag.pipeline import Tagger, softmax
    from autotag.taxonomy.imagenet import imagenet_hierarchy

    limit = max(args.train, args.test)
    data = load_dataset("fashion-mnist", limit=limit)
    train, test = data.split("train"), data.split("test")
    # the first N of each split, so that the kNN baseline sees exactly the same training images
    train = Dataset(train.records[: args.train], train.labels, train.name, single_label=True)
    test = Dataset(test.records[: args.test], test.labels, test.name, single_label=True)
    y_train, y_test = train.label_indices(), test.label_indices()

    tagger = Tagger.load()
    timings = {}
    t0 = time.perf_counter()
    enc_test = encode_records(tagger, test.sources, cache=True, progress=True)
    enc_train = encode_records(tagger, train.sources, cache=True, progress=True)
    timings["encode_s"] = time.perf_counter() - t0
    encoded_fresh = int(enc_test.ok.sum() + enc_train.ok.sum()) - enc_test.from_cache - enc_train.from_cache
    assert enc_test.ok.all() and enc_train.ok.all(), "unreadable Fashion-MNIST PNGs"

    # 1. default ImageNet model through the label mapping
    scores, _ = default_model_scores(enc_test.logits, FASHION_MNIST_CLASSES)
    mapped = M.single_label_report(y_test, scores, FASHION_MNIST_CLASSES)
    h = imagenet_hierarchy()
    leaf_top1 = softmax(enc_test.logits).argmax(1)
    wnid_to_class = {w: c for c, wnids in FASHION_TO_IMAGENET.items() for w in wnids}
    leaf_class = [wnid_to_class.get(h.class_ids[i]) for i in leaf_top1]
    strict_leaf_acc = float(np.mean([lc == FASHION_MNIST_CLASSES[y] for lc, y in zip(leaf_class, y_test, strict=True)]))
    leaf_in_mapping = float(np.mean([lc is not None for lc in leaf_class]))
    top_leaves = np.bincount(leaf_top1, minlength=1000).argsort()[::-1][:5]

    # 2. linear probe on frozen embeddings
    t0 = time.perf_counter()
    scaler = StandardScaler().fit(enc_train.embeddings)
    probe = LogisticRegression(max_iter=2000, C=0.5).fit(scaler.transform(enc_train.embeddings), y_train)
    probe_scores = probe.predict_proba(scaler.transform(enc_test.embeddings))
    timings["probe_fit_s"] = time.perf_counter() - t0
    probe_rep = M.single_label_report(y_test, probe_scores, FASHION_MNIST_CLASSES)

    # 3. kNN on raw pixels, same training images
    t0 = time.perf_counter()
    pix_train, _ = read_fashion_mnist(None, "train")
    pix_test, _ = read_fashion_mnist(None, "test")
    knn = KNeighborsClassifier(n_neighbors=args.knn_k).fit(pix_train[: args.train].reshape(args.train, -1) / 255.0,
                                                           y_train)  # fmt: skip
    knn_pred = knn.predict(pix_test[: args.test].reshape(args.test, -1) / 255.0)
    timings["knn_s"] = time.perf_counter() - t0
    knn_acc = float((knn_pred == y_test).mean())

    result = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, {platform.python_version()}",
        "encoder": tagger.encoder.spec.name,
        "n_train": args.train,
        "n_test": args.test,
        "default_mapped_accuracy": mapped["accuracy"],
        "default_mapped_per_class_accuracy": mapped["per-class-accuracy"],
        "default_mapped_top5": mapped["top5-accuracy"],
        "default_mapped_ECE": mapped.get("ECE"),
        "default_strict_leaf_accuracy": strict_leaf_acc,
        "default_leaf_in_mapping": leaf_in_mapping,
        "default_most_common_leaves": [h.class_names[i] for i in top_leaves],
        "probe_accuracy": probe_rep["accuracy"],
        "probe_per_class_accuracy": probe_rep["per-class-accuracy"],
        "probe_ECE": probe_rep.get("ECE"),
        "knn_pixels_accuracy": knn_acc,
        "probe_over_knn": probe_rep["accuracy"] / knn_acc,
        "images_encoded_this_run": encoded_fresh,
        "encode_images_per_s": encoded_fresh / timings["encode_s"] if encoded_fresh else None,
        "timings_s": timings,
    }
    if args.mosaic:
        # 4. the multi-label path end to end: the default model on FashionMosaic test images
        from autotag.evaluate import evaluate

        mosaic = load_dataset(f"fashion-mosaic:{args.mosaic}").split("test")
        mosaic = Dataset(mosaic.records[: args.mosaic_test], mosaic.labels, mosaic.name)
        t0 = time.perf_counter()
        ev = evaluate(mosaic, ["default"], ["threshold:0.3", "top-k:2", "oracle-k"], cache=True, progress=True)
        timings["mosaic_eval_s"] = time.perf_counter() - t0
        result["mosaic_default"] = ev.table()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(
        f"\ndefault ImageNet model via mapping: {mapped['accuracy']:.4f} accuracy "
        f"(strict top-1 leaf {strict_leaf_acc:.4f}); linear probe on {args.train} frozen embeddings: "
        f"{probe_rep['accuracy']:.4f}; kNN (k={args.knn_k}) on raw pixels: {knn_acc:.4f}; "
        f"probe/kNN = {result['probe_over_knn']:.3f}"
    )


if __name__ == "__main__":
    main()
