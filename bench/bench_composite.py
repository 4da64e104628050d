"""FashionMosaic ablation: image-only vs image + user tags, fixed top-3 vs predicted label count.

  nice -n 10 .venv/bin/python bench/bench_composite.py [--mosaic .cache/fashion-mosaic]
      [--n-train 8000 --n-val 2000 --n-test 5000] [--size 128 --grid 2]
      [--backbone .cache/ft_fmnist_lite0.pt]   # a backbone fine-tuned by bench_fashion_mnist.py
      [--tiles 2 --grid 1]                      # each mosaic cell embedded on its own

Embeddings: EfficientNet-Lite0's last feature map at `size` px, average-pooled on a grid x grid grid
(a spatial-pyramid level that keeps coarse layout; grid=1 is the usual global pooling, which is also
reported, computed from the same feature maps), or with --tiles t each of the t x t tiles of the
image embedded on its own at size/t px (autotag.encoders.efficientnet_lite.pool_features).
Heads: autotag.heads.CompositeTagger, one model with the image only and one with the user tags too.
Rows follow the original study's ablation.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / ".cache" / "bench"
COLUMNS = ["C-P", "C-R", "C-F1", "O-P", "O-R", "O-F1", "H-F1", "count-accuracy"]


def load_split(data, name: str, n: int, seed: int):
    from PIL import Image

    part = data.split(name)
    if n and n < len(part):
        part = part.subset(n, seed)
    pixels = np.stack([np.asarray(Image.open(r.source).convert("L")) for r in part.records])[:, None]
    return pixels, part.label_matrix(data.labels), [list(r.user_tags) for r in part.records]


def embed(pixels: np.ndarray, size: int, grid: int, backbone: str | None, tiles: int) -> np.ndarray:
    import torch

    from autotag.artifact import build_encoder_net
    from autotag.train.finetune import prepare_batch

    state = None
    if backbone:
        saved = torch.load(backbone, map_location="cpu", weights_only=False)["state_dict"]
        state = {k.removeprefix("backbone."): v for k, v in saved.items() if k.startswith("backbone.")}
    net = build_encoder_net("efficientnet_lite0", grid, state, tiles).to(memory_format=torch.channels_last)
    out = []
    with torch.inference_mode():
        for start in range(0, len(pixels), 200):
            out.append(net(prepare_batch(torch.from_numpy(pixels[start:start + 200]), size))[1].numpy())
    return np.concatenate(out).astype(np.float32)


def global_pool(embeddings: np.ndarray, grid: int) -> np.ndarray:
    """The grid cells' average = the usual global average pooling of the same feature map."""
    return embeddings.reshape(len(embeddings), 1280, grid * grid).mean(2) if grid > 1 else embeddings


def audit_auroc(model, test_emb: np.ndarray, yte: np.ndarray, tags: list[list[str]], labels: list[str],
                rows: dict) -> None:
    """Tag audit as `autotag audit --model` runs it (visual head + the user-tag head's grounding): AUROC of
    flagging irrelevant typed tags (relevant = a word of a garment present, as the generator defines it)."""
    from autotag.data.mosaic import CLASS_WORDS
    from autotag.suggest.audit import TagAuditor
    from autotag.suggest.ood import auroc

    word_class = {w: c for c, words in CLASS_WORDS.items() for w in words}
    auditor = TagAuditor(labels, model.tag_grounding())
    relevant, irrelevant = [], []
    for y, typed, scores in zip(yte, tags, model.predict_visual_proba(test_emb), strict=True):
        present = {labels[j] for j in np.flatnonzero(y)}
        for a in auditor.audit(scores, typed):
            (relevant if word_class.get(a.tag) in present else irrelevant).append(a.relevance)
    value = auroc(-np.array(relevant), -np.array(irrelevant))
    rows["tag audit (trained model)"] = {"auroc": value, "relevant": len(relevant), "irrelevant": len(irrelevant)}
    print(f"tag audit with the trained model: AUROC {value:.4f} ({len(relevant)} relevant, "
          f"{len(irrelevant)} irrelevant)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mosaic", default=str(ROOT / ".cache" / "fashion-mosaic"))
    p.add_argument("--n-train", type=int, default=8000)
    p.add_argument("--n-val", type=int, default=2000)
    p.add_argument("--n-test", type=int, default=5000)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--grid", type=int, default=2)
    p.add_argument("--tiles", type=int, default=1)
    p.add_argument("--backbone", default=None)
    p.add_argument("--visual-hidden", type=int, default=512)
    p.add_argument("--tag", default="frozen")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    from autotag.data import load_dataset
    from autotag.decide import decide, fit_thresholds
    from autotag.heads import CompositeTagger
    from autotag.metrics import multilabel_report

    OUT.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    data = load_dataset(f"fashion-mosaic:{args.mosaic}")
    layout = f"{args.grid}" + (f"t{args.tiles}" if args.tiles > 1 else "")
    cache = OUT / f"mosaic_emb_{args.tag}_{args.size}_{layout}_{args.n_train}_{args.n_val}_{args.n_test}.npz"
    splits = {name: load_split(data, name, n, args.seed)
              for name, n in (("train", args.n_train), ("val", args.n_val), ("test", args.n_test))}
    if cache.is_file():
        stored = np.load(cache)
        emb = {name: stored[name] for name in splits}
        embed_seconds = float(stored["seconds"])
    else:
        emb = {name: embed(px, args.size, args.grid, args.backbone, args.tiles) for name, (px, _, _) in splits.items()}
        embed_seconds = time.time() - t0
        np.savez(cache, seconds=embed_seconds, **emb)
    print(f"embeddings {emb['train'].shape} in {embed_seconds:.0f}s", flush=True)
    (_, ytr, ttr), (_, yva, tva), (_, yte, tte) = splits["train"], splits["val"], splits["test"]

    def fit(train_emb, val_emb, user_tags: bool, hidden: int) -> CompositeTagger:
        return CompositeTagger(labels=data.labels, visual_hidden=hidden, use_user_tags=user_tags,
                               seed=args.seed).fit(train_emb, ytr, ttr if user_tags else None,
                                                   val=(val_emb, yva, tva if user_tags else None))

    rows: dict[str, dict] = {}

    def add(name: str, pred: np.ndarray, scores: np.ndarray) -> None:
        report = multilabel_report(yte, pred, scores)
        rows[name] = {k: report[k] for k in [*COLUMNS, "mAP"]}
        print(name.ljust(48), " ".join(f"{rows[name][c] * 100:5.1f}" for c in COLUMNS), flush=True)

    print("row".ljust(48), " ".join(c[:5].rjust(5) for c in COLUMNS))
    t1 = time.time()
    if args.grid > 1:  # the usual frozen baseline: global pooling of the same feature maps
        g_img = fit(global_pool(emb["train"], args.grid), global_pool(emb["val"], args.grid), False,
                    args.visual_hidden)
        s = g_img.predict_visual_proba(global_pool(emb["test"], args.grid))
        add("global-pooled image only, top-3", decide("top-k", s, k=3), s)
        g_all = fit(global_pool(emb["train"], args.grid), global_pool(emb["val"], args.grid), True,
                    args.visual_hidden)
        gt = global_pool(emb["test"], args.grid)
        s = g_all.predict_proba(gt, tte)
        add("global-pooled composite (predicted k)", decide("top-k-predicted", s, counts=g_all.predict_count(gt, tte)),
            s)
    image = fit(emb["train"], emb["val"], False, args.visual_hidden)
    s_img = image.predict_visual_proba(emb["test"])
    add("image only, top-3", decide("top-k", s_img, k=3), s_img)
    add("image only + predicted k", decide("top-k-predicted", s_img, counts=image.predict_count(emb["test"])), s_img)
    full = fit(emb["train"], emb["val"], True, args.visual_hidden)
    s_full = full.predict_proba(emb["test"], tte)
    k_full = full.predict_count(emb["test"], tte)
    add("image + user tags, fusion, top-3", decide("top-k", s_full, k=3), s_full)
    add("full composite (predicted k)", decide("top-k-predicted", s_full, counts=k_full), s_full)
    thresholds = fit_thresholds(yva, full.predict_proba(emb["val"], tva), "f1")
    add("composite + per-label thresholds (F1 on val)", decide("per-label", s_full, thresholds=thresholds), s_full)
    add("composite, predicted k, floor 0.1", decide("predicted-k-floor", s_full, counts=k_full, floor=0.1), s_full)
    audit_auroc(full, emb["test"], yte, tte, data.labels, rows)
    mean_k = np.full(len(yte), np.rint(ytr.sum(1).mean()))
    rows["count: always the training mean"] = {"count-accuracy": float((mean_k == yte.sum(1)).mean())}
    print(f"count accuracy of always predicting the mean count: {rows['count: always the training mean']}")
    out = {"args": vars(args), "rows": rows, "embed_seconds": embed_seconds, "heads_seconds": time.time() - t1,
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "sizes": {k: len(v[1]) for k, v in splits.items()}}
    (OUT / f"composite_{args.tag}.json").write_text(json.dumps(out, indent=2))
    print(f"heads trained and scored in {time.time() - t1:.0f}s")


if __name__ == "__main__":
    main()
