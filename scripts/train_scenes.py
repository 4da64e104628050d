"""Train the scene models shipped as src/autotag/heads/scenes.json (heads/scenes.py).

Training data (offline, every picture labelled by looking at it):
  - the FIT half of the real-photo benchmark (bench/realphotos/manifest.yaml, its `tags`; a tag that is a
    category brings the categories it implies, so "sunset" is also "sky"); its TEST half is never read
    except to drop training pictures that are variants of a test picture (cosine > LEAK_COSINE);
  - bench/realphotos/scenes_extra.yaml: GCompris photos (monuments, renewable energy, animals, fish,
    tools) with every scene word visible in each, GCompris cartoon cards as negatives, and the photo
    cut-outs of tuxpaint-stamps-default (flowers, trees and the moon; the rest negatives), and
    stellarium-data's deep-sky photos (space). Retraining needs those Debian packages installed
    (gcompris-qt-data, tuxpaint-stamps-default, stellarium-data); running the tagger does not.

One model per scene word with at least MIN_POSITIVES positives: heads/learned_tag.py's features and
logistic regression (positives and negatives weigh the same in total), its regularisation chosen by
grouped cross-validation (pictures of one place or picture stay in one fold), and a threshold on the
out-of-fold scores: the lowest cut where at least TARGET_PRECISION of the training pictures above it are
positives (or STRICT_PRECISION where that costs little recall). A word whose out-of-fold cut keeps
fewer than MIN_KEPT positives is not shipped.

    PYTHONPATH=src python scripts/train_scenes.py [--realphotos DIR] [--out PATH] [--oof FILE]

--oof writes every FIT picture's out-of-fold scene words (from models that did not see it), so that
scripts/fit_consumer.py and bench figures on the FIT half are not flattered by training on it.
NEVER add mate-backgrounds, plasma-workspace-wallpapers, ukui-wallpapers or insightface pictures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "bench"))

from autotag.heads.learned_tag import LearnedTag, features, fit_logistic, library_centre  # noqa: E402
from autotag.heads.scenes import SCENES_PATH, SceneHeads  # noqa: E402
from autotag.taxonomy.consumer import default_consumer  # noqa: E402

EXTRA = ROOT / "bench" / "realphotos" / "scenes_extra.yaml"
CACHE = ROOT / ".cache" / "bench" / "scenes"
DEFAULT_REALPHOTOS = ROOT / ".cache" / "realphotos"
GCOMPRIS_RCC = Path("/usr/share/gcompris-qt/rcc")
FORBIDDEN = ("mate-backgrounds", "plasma-workspace-wallpapers", "ukui-wallpapers", "insightface")
WORDS = ("sky", "cloud", "sunset", "night", "space", "water", "sea", "beach", "mountain", "snow", "tree",
         "forest", "grass", "field", "flower", "city", "building", "desert", "landscape")  # fmt: skip
ENCODER = "efficientnet_lite0"
LAMBDAS = (0.0003, 0.003, 0.03)
FOLDS = 5
ITERATIONS = 100
TARGET_PRECISION = 0.9
# ... or this stricter precision where it keeps at least STRICT_KEEPS of the word's recall: the space
# model at 0.9 also tagged round dark cut-outs (an avocado, a cricket ball) of the FIT half, at 0.95 it
# does not and keeps 96% of its positives (sky at 0.95 would keep a third)
STRICT_PRECISION = 0.95
STRICT_KEEPS = 0.9
MIN_POSITIVES = 6
MIN_KEPT = 3
LEAK_COSINE = 0.95


def read_extra(path: Path) -> list[dict]:
    import yaml

    from train_style import read_rcc

    bundles: dict[str, dict[str, bytes]] = {}
    out = []
    for row in yaml.safe_load(path.read_text())["pictures"]:
        source = row["source"]
        if any(f in source for f in FORBIDDEN):
            raise SystemExit(f"{source}: kept for independent evaluation, never train on it")
        kind, where, inner = source.split(":", 2)
        if kind == "gcompris":
            if where not in bundles:
                bundles[where] = read_rcc(GCOMPRIS_RCC / where)
            data = bundles[where][inner]
        elif kind == "deb":
            if not Path(inner).is_file():
                raise SystemExit(f"{source}: missing; apt-get install {where}")
            data = Path(inner).read_bytes()
        else:
            raise SystemExit(f"{source}: sources are gcompris:BUNDLE.rcc:/path or deb:PACKAGE:/path")
        # one place photographed twice (a monument in two activities) stays in one fold
        stem = re.sub(r"[0-9_\-]+$", "", Path(inner).stem.lower().replace("_background", ""))
        out.append({"source": source, "data": data, "tags": list(row["tags"] or []), "group": stem})
    return out


def closure(tags: list[str]) -> set[str]:
    implied = default_consumer().implied
    return {c for t in tags for c in implied.get(t, (t,))}


def grouped_folds(groups: list[str], k: int) -> np.ndarray:
    """Fold of each row: groups spread over k folds by a stable hash (the same every run)."""
    return np.array([int(hashlib.sha1(g.encode()).hexdigest(), 16) % k for g in groups])


def fit_word(z: np.ndarray, y: np.ndarray, lam: float, train: np.ndarray) -> tuple[np.ndarray, float]:
    """The logistic regression on the rows in `train`, started from (and held near) their prototype;
    positives and negatives weigh the same in total."""
    pos, neg = y & train, ~y & train
    weights = np.where(y, 1.0 / max(1, int(pos.sum())), 1.0 / max(1, int(neg.sum()))) * train
    w0 = z[pos].mean(0) - z[neg].mean(0)
    w, b = fit_logistic(z[train], y[train].astype(np.float32), weights[train].astype(np.float32)[:, None], lam,
                        w0 / max(float(np.linalg.norm(w0)), 1e-12), ITERATIONS)  # fmt: skip
    return w[:, 0], float(b[0])


def out_of_fold(z: np.ndarray, y: np.ndarray, folds: np.ndarray, lam: float) -> np.ndarray:
    """Each row's score from the model fitted without its fold (the prototype too)."""
    scores = np.full(len(z), -np.inf)
    for f in range(FOLDS):
        held = folds == f
        if held.any() and (y & ~held).sum() >= 2:
            w, b = fit_word(z, y, lam, ~held)
            scores[held] = z[held] @ w + b
    return scores


def precision_cut(scores: np.ndarray, y: np.ndarray, target: float) -> tuple[float, float, int]:
    """(lowest cut reaching `target` precision, the precision there, positives kept); inf if none."""
    order = np.argsort(-scores)
    hits = np.cumsum(y[order])
    precision = hits / np.arange(1, len(y) + 1)
    ok = np.flatnonzero((precision >= target) & np.isfinite(scores[order]))
    if not len(ok):
        return float("inf"), 0.0, 0
    i = ok[-1]
    return float(scores[order][i]), float(precision[i]), int(hits[i])


def average_precision(scores: np.ndarray, y: np.ndarray) -> float:
    order = np.argsort(-scores)
    hits = np.cumsum(y[order])
    return float((hits / np.arange(1, len(y) + 1))[y[order]].mean()) if y.any() else 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--realphotos", type=Path, default=DEFAULT_REALPHOTOS)
    ap.add_argument("--extra", type=Path, default=EXTRA)
    ap.add_argument("--out", type=Path, default=SCENES_PATH)
    ap.add_argument("--oof", type=Path, help="write the FIT pictures' out-of-fold scene words here (JSON)")
    ap.add_argument("--target-precision", type=float, default=TARGET_PRECISION)
    args = ap.parse_args(argv)

    from autotag.pipeline import Tagger
    from bench_consumer import load_set

    entries = load_set(args.realphotos)
    fit = [e for e in entries if e["split"] == "fit"]
    test = [e for e in entries if e["split"] == "test"]
    extra = read_extra(args.extra)
    tagger = Tagger.load(None)

    def embed(blobs: list[bytes]) -> np.ndarray:
        """Embeddings, cached per picture's bytes in CACHE (the encoder is the slow part)."""
        CACHE.mkdir(parents=True, exist_ok=True)
        files = [CACHE / f"{ENCODER}-{hashlib.sha1(b).hexdigest()[:20]}.npy" for b in blobs]
        todo = [i for i, f in enumerate(files) if not f.is_file()]
        if todo:
            for i, e in zip(todo, tagger.embed([blobs[i] for i in todo]), strict=True):
                np.save(files[i], e)
        return np.stack([np.load(f) for f in files]).astype(np.float32)

    emb_fit = embed([Path(e["path"]).read_bytes() for e in fit])
    emb_test = embed([Path(e["path"]).read_bytes() for e in test])
    emb_extra = embed([e["data"] for e in extra])

    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    near = (unit(emb_extra) @ unit(emb_test).T).max(1)
    leaks = [e["source"] for e, c in zip(extra, near, strict=True) if c > LEAK_COSINE]
    keep = near <= LEAK_COSINE
    extra = [e for e, k in zip(extra, keep, strict=True) if k]
    emb = np.concatenate([emb_fit, emb_extra[keep]])
    rows = [{"source": e["path"], "tags": closure(e["tags"]), "group": e["id"]} for e in fit]
    rows += [{"source": e["source"], "tags": closure(e["tags"]), "group": e["group"]} for e in extra]
    centre = library_centre(emb)
    z = features(emb, centre)
    folds = grouped_folds([r["group"] for r in rows], FOLDS)
    digest = hashlib.sha256()
    for r, e in zip(rows, emb, strict=True):
        digest.update(json.dumps([r["source"], sorted(r["tags"])]).encode())
        digest.update(np.asarray(e, np.float32).tobytes())

    models, report, oof = [], {}, {e["id"]: {} for e in fit}
    for word in WORDS:
        y = np.array([word in r["tags"] for r in rows])
        if y.sum() < MIN_POSITIVES:
            report[word] = {"positives": int(y.sum()), "shipped": False, "why": "too few positives"}
            continue
        by_lam = {lam: out_of_fold(z, y, folds, lam) for lam in LAMBDAS}
        lam = max(LAMBDAS, key=lambda m: average_precision(by_lam[m], y))
        scores = by_lam[lam]
        cut, precision, kept = precision_cut(scores, y, args.target_precision)
        strict = precision_cut(scores, y, STRICT_PRECISION)
        if strict[2] >= STRICT_KEEPS * kept:  # a stricter cut that costs (almost) no recall is taken
            cut, precision, kept = strict
        entry = {"positives": int(y.sum()), "negatives": int((~y).sum()), "lambda": lam,
                 "oof_average_precision": round(average_precision(scores, y), 3),
                 "oof_precision": round(precision, 3), "oof_recall": round(kept / int(y.sum()), 3)}  # fmt: skip
        if kept < MIN_KEPT:
            report[word] = {**entry, "shipped": False, "why": f"fewer than {MIN_KEPT} positives above a precise cut"}
            continue
        w, b = fit_word(z, y, lam, np.ones(len(y), bool))
        models.append(LearnedTag(word, centre.astype(np.float32), w.astype(np.float32), b, cut, int(y.sum()),
                                 int((~y).sum()), precision, {"lambda": lam}))  # fmt: skip
        report[word] = {**entry, "shipped": True}
        for i, e in enumerate(fit):  # the FIT rows come first
            if np.isfinite(scores[i]) and scores[i] >= cut:
                oof[e["id"]][word] = float(1.0 / (1.0 + np.exp(-scores[i])))
    heads = SceneHeads(ENCODER, tuple(models), {
        "trained_on": f"{len(fit)} FIT pictures of bench/realphotos + {len(extra)} of {EXTRA.name}",
        "date": dt.date.today().isoformat(), "fingerprint": digest.hexdigest()[:16],
        "target_precision": args.target_precision, "dropped_as_test_variants": leaks, "words": report,
    })  # fmt: skip
    heads.save(args.out)
    for word, r in report.items():
        print(f"{word:10s} {json.dumps(r)}")
    print(f"wrote {args.out} ({len(models)} words); {len(leaks)} extra pictures dropped as test variants")
    if args.oof:
        args.oof.parent.mkdir(parents=True, exist_ok=True)
        args.oof.write_text(json.dumps(oof, indent=0, sort_keys=True))
        print(f"wrote {args.oof}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
