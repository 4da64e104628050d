"""Fashion-MNIST single-label benchmark: fine-tuned backbone, frozen-embedding heads, sklearn baseline.

  nice -n 10 .venv/bin/python bench/bench_fashion_mnist.py finetune [--epochs 4 --size 64]
  nice -n 10 .venv/bin/python bench/bench_fashion_mnist.py frozen [--encoder efficientnet_lite0]
  nice -n 10 .venv/bin/python bench/bench_fashion_mnist.py speed [--images 500 --rounds 3]

Reads the official idx files (60k train, 10k test) from /usr/share/datasets/fashion-mnist. The
validation split (5k) is carved out of train with a fixed seed; the test set is used once, at the end.
Results are printed and written as JSON under .cache/bench/.
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path("/usr/share/datasets/fashion-mnist")
OUT = ROOT / ".cache" / "bench"
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle boot"]


def read_idx(kind: str) -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(DATA / f"{kind}-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(DATA / f"{kind}-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64)
    return images, labels


def splits(limit: int | None = None, val_size: int = 5000, seed: int = 0):
    x, y = read_idx("train")
    xt, yt = read_idx("t10k")
    order = np.random.default_rng(seed).permutation(len(x))
    val, train = order[:val_size], order[val_size:]
    if limit:
        train, val = train[:limit], val[: max(limit // 4, 64)]
        xt, yt = xt[:limit], yt[:limit]
    return (x[train], y[train]), (x[val], y[val]), (xt, yt)


def run_finetune(args) -> dict:
    import torch

    from autotag.train.finetune import FineTuneConfig, finetune, predict_logits

    (xtr, ytr), (xva, yva), (xte, yte) = splits(args.limit)
    config = FineTuneConfig(encoder=args.encoder, size=args.size, epochs=args.epochs,
                            batch_size=args.batch_size, lr=args.lr, augment=args.augment, label_smoothing=0.1,
                            ema_decay=args.ema,
                            tta=True, seed=0, max_minutes=args.max_minutes)
    print(f"fine-tune {args.encoder} at {args.size}px on {len(xtr)} images, val {len(xva)}, test {len(xte)}",
          flush=True)
    result = finetune(xtr, ytr, xva, yva, config, log=lambda s: print(s, flush=True))
    t0 = time.time()
    plain, tta = predict_logits(result.net, torch.as_tensor(xte.copy()), args.size, tta=True, both=True)
    out = {
        "encoder": args.encoder, "size": args.size, "epochs_run": len(result.history),
        "train_minutes": result.seconds / 60, "test_eval_seconds": time.time() - t0,
        "test_accuracy": float((plain.argmax(1) == yte).mean()),
        "test_accuracy_tta": float((tta.argmax(1) == yte).mean()),
        "used_ema": result.used_ema, "history": result.history, "config": config.to_dict(),
        "n_train": len(xtr), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    if args.save:
        torch.save({"state_dict": result.net.state_dict(), "config": config.to_dict(), "classes": CLASSES},
                   args.save)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("part", choices=["finetune", "frozen", "speed"])
    p.add_argument("--encoder", default="efficientnet_lite0")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--augment", type=float, default=0.3)
    p.add_argument("--ema", type=float, default=0.996)
    p.add_argument("--max-minutes", type=float, default=None)
    p.add_argument("--limit", type=int, default=None, help="tiny subset for a smoke run")
    p.add_argument("--save", default=None, help="save the fine-tuned network here (torch.save)")
    p.add_argument("--tag", default="")
    p.add_argument("--train", type=int, default=10_000, help="frozen: first N training images")
    p.add_argument("--test", type=int, default=10_000, help="frozen: first N test images (10000 = all)")
    p.add_argument("--encoders", default="efficientnet_lite0,efficientnet_lite1,efficientnet_lite2",
                   help="speed: encoders to compare, the first is the baseline")
    p.add_argument("--images", type=int, default=500, help="speed: uncached test images per round")
    p.add_argument("--rounds", type=int, default=3, help="speed: rounds (best kept)")
    args = p.parse_args()
    out = {"finetune": run_finetune, "frozen": run_frozen, "speed": run_speed}[args.part](args)
    OUT.mkdir(parents=True, exist_ok=True)
    name = (f"fashion_mnist_speed{args.tag}.json" if args.part == "speed"
            else f"fashion_mnist_{args.part}_{args.encoder}{args.tag}.json")
    (OUT / name).write_text(json.dumps(out, indent=2))
    print(json.dumps({k: v for k, v in out.items() if k not in ("history", "config")}, indent=2))


def encoder_parameters(name: str) -> int:
    """Weights in the encoder's ONNX graph (every initializer), i.e. what actually runs."""
    import onnx

    from autotag.encoders.efficientnet_lite import ensure_onnx

    graph = onnx.load(str(ensure_onnx(name)), load_external_data=False).graph
    return int(sum(np.prod(t.dims, dtype=np.int64) for t in graph.initializer))


def run_speed(args) -> dict:
    """Encoder throughput, all encoders in one process, interleaved round by round on the same uncached
    test images, best round kept: on a shared machine this is the comparable figure (each frozen run's
    own images/s depends on what else ran at that time)."""
    from autotag.data import load_dataset
    from autotag.pipeline import Tagger

    sources = load_dataset("fashion-mnist", limit=args.images).split("test").sources[: args.images]
    taggers = {name: Tagger.load(name) for name in args.encoders.split(",")}
    for tagger in taggers.values():
        tagger.embed(sources[:32])  # warm-up: session start and first allocations
    seconds: dict[str, list[float]] = {name: [] for name in taggers}
    for r in range(args.rounds):
        for name, tagger in taggers.items():
            t0 = time.perf_counter()
            tagger.embed(sources)
            seconds[name].append(time.perf_counter() - t0)
            print(f"round {r + 1}: {name} {len(sources) / seconds[name][-1]:.1f} images/s", flush=True)
    base = next(iter(taggers))
    best = {name: len(sources) / min(s) for name, s in seconds.items()}
    return {
        "images": len(sources), "rounds": args.rounds, "seconds": seconds,
        "images_per_s": best, "relative_to_" + base: {n: v / best[base] for n, v in best.items()},
        "parameters": {name: encoder_parameters(name) for name in taggers},
        "input_size": {name: t.encoder.spec.input_size for name, t in taggers.items()},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def run_frozen(args) -> dict:
    """Frozen-embedding heads on one encoder, all in one run: autotag's HeadClassifier (linear and MLP)
    and scikit-learn's one-vs-rest logistic regression on the same embeddings, plus the encoder's size
    and speed. Train: the first --train Fashion-MNIST training images; test: the first --test official
    test images (10000 = all). Encoder outputs go through autotag's embedding cache, so a rerun only
    refits the heads (images/s is then measured on a separate uncached pass)."""
    import os
    import platform

    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.preprocessing import StandardScaler

    from autotag.data import Dataset, load_dataset
    from autotag.evaluate import encode_records
    from autotag.heads import HeadClassifier
    from autotag.pipeline import Tagger

    data = load_dataset("fashion-mnist", limit=max(args.train, args.test))
    train, test = data.split("train"), data.split("test")
    train = Dataset(train.records[: args.train], train.labels, train.name, single_label=True)
    test = Dataset(test.records[: args.test], test.labels, test.name, single_label=True)
    y_train, y_test = train.label_indices(), test.label_indices()
    tagger = Tagger.load(args.encoder)
    print(f"frozen {args.encoder}: embedding {len(train)} train + {len(test)} test images", flush=True)
    t0 = time.perf_counter()
    enc_test = encode_records(tagger, test.sources, cache=True, progress=True)
    enc_train = encode_records(tagger, train.sources, cache=True, progress=True)
    encode_s = time.perf_counter() - t0
    assert enc_test.ok.all() and enc_train.ok.all(), "unreadable Fashion-MNIST PNGs"
    fresh = len(train) + len(test) - enc_test.from_cache - enc_train.from_cache
    if fresh >= 1000:
        speed = {"images": fresh, "seconds": encode_s, "how": "this run's encoding (decode + preprocess + ONNX)"}
    else:  # (nearly) everything came from the cache: time an uncached pass over up to 1000 test images
        probe = test.sources[:1000]
        t0 = time.perf_counter()
        tagger.embed(probe)
        speed = {"images": len(probe), "seconds": time.perf_counter() - t0,
                 "how": f"uncached pass over {len(probe)} test images (decode + preprocess + ONNX)"}
    speed["images_per_s"] = speed["images"] / speed["seconds"]
    print(f"encoded {fresh} images fresh in {encode_s:.0f}s; {speed['images_per_s']:.1f} images/s", flush=True)

    heads = {}
    for name, hidden in (("head-linear", 0), ("head-mlp512", 512)):
        t0 = time.perf_counter()
        head = HeadClassifier(hidden=hidden, seed=0).fit(enc_train.embeddings, y_train)
        seconds = time.perf_counter() - t0
        acc = float((head.predict(enc_test.embeddings) == y_test).mean())
        heads[name] = {"test_accuracy": acc, "train_seconds": seconds, "epochs_run": len(head.history_)}
        print(f"{name}: test accuracy {acc:.4f}, trained in {seconds:.1f}s", flush=True)
    t0 = time.perf_counter()
    scaler = StandardScaler().fit(enc_train.embeddings)
    ovr = OneVsRestClassifier(LogisticRegression(max_iter=2000, C=0.5)).fit(scaler.transform(enc_train.embeddings),
                                                                            y_train)
    seconds = time.perf_counter() - t0
    acc = float((ovr.predict(scaler.transform(enc_test.embeddings)) == y_test).mean())
    heads["sklearn-logreg-ovr"] = {"test_accuracy": acc, "train_seconds": seconds}
    print(f"sklearn one-vs-rest logistic regression: test accuracy {acc:.4f}, trained in {seconds:.1f}s", flush=True)
    return {
        "encoder": args.encoder, "input_size": tagger.encoder.spec.input_size,
        "encoder_parameters": encoder_parameters(args.encoder), "encode": speed,
        "images_encoded_this_run": fresh, "encode_seconds": encode_s,
        "n_train": len(train), "n_test": len(test), "heads": heads,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}",
    }


if __name__ == "__main__":
    main()
