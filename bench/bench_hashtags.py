"""Hashtags with abstention, out-of-domain detection and tag audit: the figures of BENCHMARKS.md (area D).

    nice -n 10 .venv/bin/python bench/bench_hashtags.py [--write-operating-points]

1. Hashtag precision/coverage of the default model with the shipped mapping. Labelled data is
   scarce here, so the validation set is honest but small: 20 real photos bundled with
   scikit-image, scikit-learn and matplotlib with hashtags assigned by hand (each seen as 12
   crops/flips, so 240 correlated views), plus Fashion-MNIST test garments, all #fashion by the
   vocabulary's definition. Operating points are fitted on one half (split by photo) and measured
   on the other, both ways (2-fold); --write-operating-points then fits on everything and writes
   the shipped src/autotag/taxonomy/hashtags_operating_points.json.
2. Out-of-domain AUROC: a Fashion-MNIST model (logistic regression on frozen embeddings) against
   digits and real photos; the default model's real photos against non-photos (noise, flat colours,
   gradients, checkerboards, digits, rendered text).
3. Tag-audit AUROC on FashionMosaic noisy user tags (relevant = a word of a garment present, as the
   generator defines it), with learned grounding vs text similarity alone (the baseline).
Encoder outputs are cached in .cache/bench/hashtags so reruns are quick.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "bench" / "hashtags"
os.environ.setdefault("AUTOTAG_CACHE_DIR", str(ROOT / ".cache" / "test"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Hand-assigned hashtags (from the shipped vocabulary), decided by looking at the photos only.
PHOTO_TRUTH: dict[str, list[str]] = {
    "skimage:chelsea": ["cats", "pets", "animals"],
    "skimage:coffee": ["coffee", "food"],
    "skimage:rocket": ["space"],
    "skimage:astronaut": ["space"],
    "skimage:motorcycle_left": ["bikes"],
    "skimage:motorcycle_right": ["bikes"],
    "skimage:camera": [],
    "skimage:brick": [],
    "skimage:grass": ["nature"],
    "skimage:gravel": [],
    "skimage:coins": [],
    "skimage:moon": ["space"],
    "skimage:hubble_deep_field": ["space"],
    "skimage:retina": [],
    "skimage:immunohistochemistry": [],
    "skimage:cell": [],
    "sklearn:china.jpg": ["architecture"],
    "sklearn:flower.jpg": ["flowers", "nature"],
    "matplotlib:grace_hopper.jpg": [],
}
VIEWS = 12


def load_photo(key: str) -> Image.Image:
    """A PHOTO_TRUTH key ("source:name") -> the bundled photo."""
    from autotag.demo import bundled_photo

    return bundled_photo(key.split(":")[1].removesuffix(".jpg"))


def views(im: Image.Image, n: int, seed: int) -> list[Image.Image]:
    """The full image, its mirror, then random crops of 45-90% of the side (some mirrored)."""
    rng = np.random.default_rng(seed)
    out = [im, im.transpose(Image.FLIP_LEFT_RIGHT)]
    w, h = im.size
    while len(out) < n:
        f = rng.uniform(0.45, 0.9)
        cw, ch = int(w * f), int(h * f)
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        crop = im.crop((x, y, x + cw, y + ch))
        out.append(crop.transpose(Image.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else crop)
    return out


def non_photos(n_each: int = 12, seed: int = 0) -> tuple[list[Image.Image], list[str]]:
    from sklearn.datasets import load_digits

    rng = np.random.default_rng(seed)
    ims, kinds = [], []

    def add(im: Image.Image, kind: str) -> None:
        ims.append(im.convert("RGB"))
        kinds.append(kind)

    s = 256
    for _ in range(n_each):
        add(Image.fromarray(rng.integers(0, 256, (s, s, 3), dtype=np.uint8)), "uniform noise")
        add(Image.fromarray(np.clip(rng.normal(128, 40, (s, s, 3)), 0, 255).astype(np.uint8)), "gaussian noise")
        add(Image.new("RGB", (s, s), tuple(int(v) for v in rng.integers(0, 256, 3))), "flat colour")
        a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        t = np.linspace(0, 1, s)[None, :, None]
        grad = (a * (1 - t) + b * t).repeat(s, axis=0).astype(np.uint8)
        add(Image.fromarray(grad), "gradient")
        k = int(rng.integers(4, 33))
        board = ((np.indices((s, s)) // k).sum(axis=0) % 2 * 255).astype(np.uint8)
        add(Image.fromarray(board), "checkerboard")
        canvas = Image.new("RGB", (s, s), "white")
        draw = ImageDraw.Draw(canvas)
        words = ["invoice", "total", "hello world", "lorem ipsum", "2026-11-25", "page 3", "autotag", "TODO"]
        for row in range(int(rng.integers(3, 12))):
            draw.text((8, 8 + row * 20), " ".join(rng.choice(words, 3)), fill=(0, 0, 0))
        add(canvas, "text render")
    digits = load_digits()
    for i in rng.choice(len(digits.images), 2 * n_each, replace=False):
        arr = (digits.images[i] / 16 * 255).astype(np.uint8)
        add(Image.fromarray(arr).resize((s, s), Image.NEAREST), "digit")
    from skimage import data

    for name in ("text", "page", "checkerboard", "horse", "logo", "colorwheel", "binary_blobs"):
        try:
            arr = getattr(data, name)()
        except Exception:
            continue
        arr = np.asarray(arr)
        if arr.dtype == bool:
            arr = arr.astype(np.uint8) * 255
        if arr.ndim == 3 and arr.shape[2] == 4:
            arr = arr[..., :3]
        add(Image.fromarray(arr.astype(np.uint8)), f"skimage {name}")
    return ims, kinds


def encode(images: list[Image.Image], size: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(logits, embeddings) of the default encoder at `size` px, cached on disk by name."""
    path = CACHE / f"{name}-{size}.npz"
    if path.is_file():
        with np.load(path) as d:
            if len(d["logits"]) == len(images):
                return d["logits"], d["embeddings"]
    from autotag.encoders import create_encoder
    from autotag.encoders.base import preprocess

    enc = create_encoder("efficientnet_lite0")
    logits, embs = [], []
    for start in range(0, len(images), 64):
        batch = np.stack([preprocess(im.convert("RGB"), enc.spec, size) for im in images[start : start + 64]])
        lg, em = enc.run(batch)
        logits.append(lg)
        embs.append(em)
    out = np.concatenate(logits), np.concatenate(embs)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, logits=out[0], embeddings=out[1])
    return out


def fmnist(split: str, n: int, seed: int) -> tuple[list[Image.Image], np.ndarray]:
    from autotag.data.fashion_mnist import read_fashion_mnist

    x, y = read_fashion_mnist(None, split)
    idx = np.random.default_rng(seed).choice(len(x), n, replace=False)
    return [Image.fromarray(x[i]) for i in idx], y[idx]


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# -- 1. hashtag precision / coverage ----------------------------------------------------------------
def hashtag_section(args: argparse.Namespace, report: dict) -> None:
    from autotag.suggest.hashtags import HashtagSuggester, OperatingPoints, precision_coverage_curve

    suggester = HashtagSuggester.default()
    tags = suggester.tag_names
    keys = list(PHOTO_TRUTH)
    photo_ims, photo_group = [], []
    for g, key in enumerate(keys):
        for v in views(load_photo(key), VIEWS, seed=g):
            photo_ims.append(v)
            photo_group.append(g)
    photo_group = np.array(photo_group)
    p_logits, _ = encode(photo_ims, 224, "photos")
    truth_p = np.zeros((len(photo_ims), len(tags)), np.uint8)
    for i, g in enumerate(photo_group):
        for t in PHOTO_TRUTH[keys[g]]:
            truth_p[i, tags.index(t)] = 1
    f_ims, _ = fmnist("test", args.fmnist_hashtag, seed=1)
    f_logits, _ = encode(f_ims, 224, f"fmnist-test-{args.fmnist_hashtag}")
    truth_f = np.zeros((len(f_ims), len(tags)), np.uint8)
    truth_f[:, tags.index("fashion")] = 1

    logits = np.concatenate([p_logits, f_logits])
    truth = np.concatenate([truth_p, truth_f])
    # folds: photos alternate by photo, garments by index
    fold = np.concatenate([photo_group % 2, np.arange(len(f_ims)) % 2])
    folds = []
    for k in (0, 1):
        fit, test = fold == k, fold != k
        s = HashtagSuggester(suggester.mapping, OperatingPoints())
        pts = s.fit_operating_points(softmax(logits[fit]), truth[fit], logits=logits[fit], target_precision=0.9)
        res = s.evaluate(softmax(logits[test]), truth[test], logits=logits[test])
        res_photos = s.evaluate(softmax(logits[test][: (fold[: len(p_logits)] != k).sum()]),
                                truth[test][: (fold[: len(p_logits)] != k).sum()],
                                logits=logits[test][: (fold[: len(p_logits)] != k).sum()])  # fmt: skip
        folds.append({"fit_fold": k, "default_threshold": pts.default, "per_tag": pts.per_tag,
                      "ood_threshold": pts.ood_threshold, "all": res, "photos_only": res_photos})  # fmt: skip
        print(f"fold {k}: thresholds default={pts.default:.3f} {pts.per_tag}; held-out: "
              f"precision {res['precision']:.3f} coverage {res['coverage']:.3f} recall {res['recall']:.3f} "
              f"({res['suggested']} tags on {res['images']} images); photos only: precision "
              f"{res_photos['precision']:.3f} coverage {res_photos['coverage']:.3f}")  # fmt: skip
    scores = suggester.scores(softmax(logits))
    curve = precision_coverage_curve(scores, truth, np.array([0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]))
    print("precision/coverage curve (one global threshold, all data, no OOD gate):")
    for row in curve:
        print(f"  t={row['threshold']:.2f}  precision {row['precision']:.3f}  coverage {row['coverage']:.3f}  "
              f"recall {row['recall']:.3f}  suggested {row['suggested']}")  # fmt: skip
    mean_p = float(np.mean([f["all"]["precision"] for f in folds]))
    mean_c = float(np.mean([f["all"]["coverage"] for f in folds]))
    report["hashtags"] = {
        "photos": len(keys), "photo_views": len(photo_ims), "fmnist_images": len(f_ims), "folds": folds,
        "heldout_precision_mean": mean_p, "heldout_coverage_mean": mean_c, "curve": curve,
    }  # fmt: skip
    print(f"HASHTAGS held-out (2-fold mean): precision {mean_p:.3f} at coverage {mean_c:.3f}")
    if args.write_operating_points:
        s = HashtagSuggester(suggester.mapping, OperatingPoints())
        meta = {"fitted_on": f"{len(keys)} hand-labelled photos x {VIEWS} views + {len(f_ims)} Fashion-MNIST "
                "garments (#fashion); bench/bench_hashtags.py", "date": time.strftime("%Y-%m-%d"),
                "heldout_precision": round(mean_p, 4), "heldout_coverage": round(mean_c, 4)}  # fmt: skip
        pts = s.fit_operating_points(softmax(logits), truth, logits=logits,
                                     target_precision=0.9, meta=meta)  # fmt: skip
        out = ROOT / "src" / "autotag" / "taxonomy" / "hashtags_operating_points.json"
        pts.save(out)
        print("wrote", out)


# -- 2. out-of-domain -------------------------------------------------------------------------------
def ood_section(args: argparse.Namespace, report: dict) -> None:
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    from autotag.suggest.ood import OOD_SCORES, EmbeddingDistanceOOD, auroc

    size = 224  # the exported encoder takes 224 px only
    tr_ims, tr_y = fmnist("train", args.fmnist_train, seed=2)
    te_ims, te_y = fmnist("test", args.fmnist_hashtag, seed=1)  # the garments of the hashtag section
    _, tr_e = encode(tr_ims, size, f"fmnist-train-{args.fmnist_train}")
    _, te_e = encode(te_ims, size, f"fmnist-test-{args.fmnist_hashtag}")
    digits = load_digits()
    d_idx = np.random.default_rng(4).choice(len(digits.images), args.fmnist_ood, replace=False)
    d_ims = [Image.fromarray((digits.images[i] / 16 * 255).astype(np.uint8)).resize((28, 28)) for i in d_idx]
    _, d_e = encode(d_ims, size, f"digits-{args.fmnist_ood}")
    photo_ims = [v for g, key in enumerate(PHOTO_TRUTH) for v in views(load_photo(key), VIEWS, seed=g)]
    _, ph_e = encode(photo_ims, size, "photos")

    mu, sd = tr_e.mean(0), tr_e.std(0) + 1e-6
    clf = LogisticRegression(max_iter=300, C=0.5).fit((tr_e - mu) / sd, tr_y)
    acc = float(clf.score((te_e - mu) / sd, te_y))
    knn = EmbeddingDistanceOOD(k=10).fit(tr_e)
    res = {"fmnist_model_test_accuracy": acc}
    for kind in ("knn_distance", "energy", "msp"):

        def score(e: np.ndarray, kind: str = kind) -> np.ndarray:
            if kind == "knn_distance":
                return knn.score(e)
            return OOD_SCORES[kind](clf.decision_function((e - mu) / sd))

        base = score(te_e)
        res[kind] = {"vs_digits": auroc(base, score(d_e)), "vs_photos": auroc(base, score(ph_e))}
        print(f"OOD Fashion-MNIST model ({kind}): AUROC vs digits {res[kind]['vs_digits']:.4f}, "
              f"vs photos {res[kind]['vs_photos']:.4f}")  # fmt: skip
    res["sizes"] = {"train": len(tr_ims), "test": len(te_ims), "digits": len(d_ims), "photo_views": len(photo_ims)}
    print(f"  (linear head accuracy on Fashion-MNIST test: {acc:.3f}; embeddings at {size} px)")

    p_logits, _ = encode(photo_ims, 224, "photos")
    np_ims, np_kinds = non_photos()
    n_logits, _ = encode(np_ims, 224, f"nonphotos-{len(np_ims)}")
    res["default_model"] = {"photo_views": len(photo_ims), "non_photos": len(np_ims)}
    for kind in sorted(OOD_SCORES):
        a = auroc(OOD_SCORES[kind](p_logits), OOD_SCORES[kind](n_logits))
        res["default_model"][kind] = a
        print(f"OOD default model vs non-photos ({kind}): AUROC {a:.4f}")
    kinds = np.array(np_kinds)
    e_p = OOD_SCORES["energy"](p_logits)
    cut = float(np.quantile(e_p, 0.95))
    per_kind = {k: float((OOD_SCORES["energy"](n_logits[kinds == k]) > cut).mean()) for k in dict.fromkeys(np_kinds)}
    res["default_model"]["flagged_share_at_95pct_photo_keep"] = per_kind
    print("  share of non-photos silenced at the cut keeping 95% of photo views:",
          {k: round(v, 2) for k, v in per_kind.items()})  # fmt: skip
    report["ood"] = res


# -- 3. tag audit -----------------------------------------------------------------------------------
def audit_section(args: argparse.Namespace, report: dict) -> None:
    from sklearn.linear_model import LogisticRegression

    from autotag.data.mosaic import CLASS_WORDS
    from autotag.suggest.audit import TagAuditor, fit_grounding
    from autotag.suggest.ood import auroc

    folder = Path(args.mosaic)
    if not (folder / "manifest.jsonl").is_file():
        print(f"audit: FashionMosaic not found in {folder}; skipped")
        return
    rows = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines() if line.strip()]
    labels = json.loads((folder / "mosaic.json").read_text())["labels"]
    train = [r for r in rows if r["split"] == "train"][: args.mosaic_train]
    test = [r for r in rows if r["split"] == "test"][: args.mosaic_test]
    size = 224

    def load(rs: list[dict]) -> list[Image.Image]:
        return [Image.open(folder / r["path"]).convert("RGB") for r in rs]

    if args.audit_embeddings:  # e.g. bench_composite.py's fine-tuned, grid-pooled embeddings (split order)
        from autotag.data import load_dataset

        data = load_dataset(f"fashion-mosaic:{folder}")
        train, test = ([r.to_dict() for r in data.split(name).records][:n]
                       for name, n in (("train", args.mosaic_train), ("test", args.mosaic_test)))  # fmt: skip
        with np.load(args.audit_embeddings) as stored:
            tr_e, te_e = stored["train"][: len(train)], stored["test"][: len(test)]
        features = f"{args.audit_embeddings} ({tr_e.shape[1]}-d)"
    else:
        features = f"{size}-px"
        _, tr_e = encode(load(train), size, f"mosaic-train-{len(train)}")
        _, te_e = encode(load(test), size, f"mosaic-test-{len(test)}")
    y_tr = np.array([[c in r["labels"] for c in labels] for r in train], np.uint8)
    mu, sd = tr_e.mean(0), tr_e.std(0) + 1e-6
    probs = np.zeros((len(test), len(labels)), np.float32)
    for j in range(len(labels)):
        clf = LogisticRegression(max_iter=300, C=0.5).fit((tr_e - mu) / sd, y_tr[:, j])
        probs[:, j] = clf.predict_proba((te_e - mu) / sd)[:, 1]
    from autotag.metrics import multilabel_report

    y_te = np.array([[c in r["labels"] for c in labels] for r in test], np.uint8)
    m = multilabel_report(y_te, (probs >= 0.5).astype(np.uint8), probs)
    grounding = fit_grounding([r["user_tags"] for r in train], y_tr, min_count=5)
    res = {"train_images": len(train), "test_images": len(test), "visual_mAP": m["mAP"]}
    for name, auditor in (("grounding+text", TagAuditor(labels, grounding)), ("text only", TagAuditor(labels))):
        rel_scores, irr_scores = [], []
        for r, p in zip(test, probs, strict=True):
            if not r["user_tags"]:
                continue
            relevant_words = {w for c in r["labels"] for w in CLASS_WORDS[c]}
            for a in auditor.audit(p, r["user_tags"]):
                (rel_scores if a.tag in relevant_words else irr_scores).append(a.relevance)
        # AUROC of "flags irrelevant": the positive class is irrelevant, scored by LOW relevance
        value = auroc(-np.array(rel_scores), -np.array(irr_scores))
        flagged_irr = float((np.array(irr_scores) < auditor.flag_below).mean())
        flagged_rel = float((np.array(rel_scores) < auditor.flag_below).mean())
        res[name] = {"auroc": value, "relevant_tags": len(rel_scores), "irrelevant_tags": len(irr_scores),
                     "flagged_irrelevant": flagged_irr, "flagged_relevant": flagged_rel}  # fmt: skip
        print(
            f"AUDIT FashionMosaic ({name}): AUROC irrelevant-vs-relevant {value:.4f} on "
            f"{len(rel_scores)} relevant / {len(irr_scores)} irrelevant tags; at relevance < "
            f"{auditor.flag_below}: flags {flagged_irr:.2%} of irrelevant, {flagged_rel:.2%} of relevant"
        )
    print(f"  (visual head: one-vs-rest logistic regression on {features} embeddings, test mAP {m['mAP']:.3f})")
    report["audit"] = res


def main() -> None:
    parser = argparse.ArgumentParser(description="hashtag / OOD / audit benchmark")
    parser.add_argument("--write-operating-points", action="store_true")
    parser.add_argument("--fmnist-hashtag", type=int, default=400)
    parser.add_argument("--fmnist-train", type=int, default=1500)
    parser.add_argument("--fmnist-ood", type=int, default=400, help="digits")
    parser.add_argument("--mosaic", default=str(ROOT / ".cache" / "fashion-mosaic"))
    parser.add_argument("--mosaic-train", type=int, default=2000)
    parser.add_argument("--mosaic-test", type=int, default=600)
    parser.add_argument("--audit-embeddings", default=None,
                        help="npz with 'train'/'test' mosaic embeddings in split order (bench_composite.py's cache)")
    parser.add_argument("--only", choices=["hashtags", "ood", "audit"], default=None)
    parser.add_argument("--json", default=str(CACHE / "report.json"))
    args = parser.parse_args()
    report: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": f"{os.cpu_count()} CPUs"}
    t0 = time.time()
    for name, fn in (("hashtags", hashtag_section), ("ood", ood_section), ("audit", audit_section)):
        if args.only in (None, name):
            fn(args, report)
    report["seconds"] = round(time.time() - t0, 1)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=1, default=float))
    print(f"done in {report['seconds']} s; report in {args.json}")


if __name__ == "__main__":
    sys.exit(main())
