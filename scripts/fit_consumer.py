"""Fit the consumer decisions on the FIT half of the real-photo benchmark; write consumer_fitted.json.

    nice -n 10 .venv/bin/python scripts/fit_consumer.py [--dir .cache/realphotos] [--views center]
                                                        [--out src/autotag/taxonomy/consumer_fitted.json]

1. A grid over the global numbers (label threshold, category bar, relative cut-off, cap) keeps the
   settings whose shown tags reach --min-precision on every fit picture (photos and art: junk on
   abstract art costs precision) and among them maximises hit@5 + coverage on the fit photos, less
   WRONG_COST for every clearly-wrong tag or animal word on an animal-free picture. Among the
   settings within one standard error of the best, the one that ignores the most noise wins.
   The grid also chooses how a category adds up its members (the best one alone, or every member
   above a floor), below which probability a class counts for nothing, and whether scores are taken
   above chance (a label's share of the classes subtracted).
2. Raise-only per-label and per-category thresholds: a label (or category) that still puts a wrong tag
   on at least two fit pictures gets a threshold just above its worst offending score, unless that
   would lose as many right tags as wrong ones. Thresholds are never lowered per label: with ~75 fit pictures
   that would be luck.
Only the fit split is read; the test split is for bench/bench_consumer.py to report.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from autotag.encoders.views import TAGGER_VIEWS  # noqa: E402
from autotag.taxonomy.consumer import ConsumerVocabulary, default_consumer  # noqa: E402
from autotag.taxonomy.decisions import (  # noqa: E402
    KIND_ORDER,
    NO_OBJECT_ALONE,
    ConsumerParams,
    Evidence,
    evidence_for,
    tags_from_evidence,
)  # fmt: skip
from autotag.usertags import normalise_user_tag  # noqa: E402
from bench_consumer import (  # noqa: E402
    DEFAULT_DIR,
    animal_words,
    detections,
    load_set,
    on_plain_background,
    score,
    view_probabilities,
)

OUT = ROOT / "src" / "autotag" / "taxonomy" / "consumer_fitted.json"
SCENES_OOF = ROOT / ".cache" / "bench" / "scenes_oof.json"
# A category is never earned on a member below 0.2: on the fit split, categories whose best member
# scored 0.1-0.2 were right about a third of the time (0.2-0.3: about 60%).
GRID = {
    "label_threshold": [0.25, 0.3, 0.35, 0.4, 0.5, 0.6],
    "category_bar": [0.2, 0.25, 0.3, 0.35, 0.4, 0.5],
    "relative": [0.0, 0.3, 0.5],
    "max_tags": [5, 8],
}
# With the detector: a detection counts from this score on (the detector itself reports from 0.3).
DETECTION_MINS = [0.3, 0.4, 0.5]
# A label backs its categories only from this share of its own threshold on (0: from its file `min`).
MEMBER_RATIOS = [0.0, 0.5, 1.0]
# A weaker detection (from confirm_min) counts when the classifier's classes naming it sum to
# confirm_support (objects helper, bench/bench_objects.py); (1.0, 1.0) turns it off.
CONFIRMS = [(1.0, 1.0), (0.3, 0.3), (0.2, 0.3)]
MEMBER_FLOORS = [1.0, 0.05, 0.02]  # 1.0: a category's best member alone
CLASS_FLOORS = [0.05, 0.02, 0.01, 0.0]  # on a tie the stricter one: it ignores more noise
WRONG_COST = 0.02
# "animal" is also earned when the animal classes together hold this much of the probability: on the
# FIT photos the animal-free ones reach at most 0.36 and the animal ones at least 0.61; on the 179
# animal-free GCompris photos of bench/realphotos/scenes_extra.yaml at most 0.20, while 94% of its 83
# animal photos reach 0.6. Not searched in the grid: the two sets above already show the gap.
CATEGORY_MASS = {"animal": 0.6}
MIN_OFFENCES = 2  # a label is raised for a systematic misfire, not for one odd picture


class Grid:
    """The decisions of taxonomy/decisions.py in matrix form over (pictures x terms), so the grid search
    costs milliseconds per setting; `check` compares it with the real function."""

    def __init__(self, entries, evs: list[Evidence], vocab: ConsumerVocabulary, like: Grid | None = None) -> None:
        self.vocab = vocab
        coco_words = sorted({e.label for e in vocab.coco.values()})
        terms = list(dict.fromkeys([*vocab.labels, *vocab.categories, *coco_words]))
        col = {t: i for i, t in enumerate(terms)}
        n, t = len(evs), len(terms)
        self.label_cols = np.array([col[x] for x in vocab.labels])
        self.cat_cols = np.array([col[x] for x in vocab.categories])
        self.label_scores = np.full((n, t), -np.inf)
        self.label_scores[:, self.label_cols] = [ev.label_scores for ev in evs]
        self.cat_scores = np.full((n, t), -np.inf)
        self.cat_scores[:, self.cat_cols] = [ev.category_scores for ev in evs]
        self.cat_best = np.full((n, t), -np.inf)
        self.cat_best[:, self.cat_cols] = [ev.category_best for ev in evs]
        self.cat_mass = np.full((n, t), -np.inf)  # earned by its classes' summed mass (category_mass)
        self.cat_mass[:, self.cat_cols] = [np.where(ev.category_mass > 0, ev.category_mass, -np.inf)
                                           if ev.category_mass is not None else np.full(len(vocab.categories), -np.inf)
                                           for ev in evs]  # fmt: skip
        self.obj_scores = np.full((n, t), -np.inf)  # a detected object shown as a tag under its word
        for i, ev in enumerate(evs):
            for name, sc in ev.objects.items():
                j = col[vocab.coco[name].label]
                self.obj_scores[i, j] = max(self.obj_scores[i, j], sc)
        cat_order = {c: j for j, c in enumerate(vocab.categories)}
        self.label_key = np.array([KIND_ORDER["label"] * 1000 + cat_order.get(x, 0) for x in terms])
        self.cat_key = np.array([KIND_ORDER["category"] * 1000 + cat_order.get(x, 0) for x in terms])
        self.obj_key = np.array([KIND_ORDER["object"] * 1000 + cat_order.get(x, 0) for x in terms])
        self.terms = terms
        if like is not None and like.terms == terms:  # the truth does not depend on the evidence
            self.right, self.wrong, self.animal, self.no_animal = like.right, like.wrong, like.animal, like.no_animal
            return
        self.right = np.array([[x in {normalise_user_tag(w) for w in e["tags"]} for x in terms] for e in entries])
        self.wrong = np.array([[x in {normalise_user_tag(w) for w in e["wrong"]} for x in terms] for e in entries])
        self.wrong &= ~self.right
        animals = animal_words()
        self.animal = np.array([x in animals for x in terms])
        self.no_animal = np.array([not set(e["tags"]) & animals for e in entries])

    def shown(self, params: ConsumerParams) -> tuple[np.ndarray, np.ndarray]:
        """(order (N, max_tags) term indices best first, mask of which of them are shown)."""
        v = self.vocab
        lthr = np.full(len(self.terms), np.inf)
        lthr[self.label_cols] = np.maximum([params.per_label.get(x, params.label_threshold) for x in v.labels],
                                           v.label_min)  # fmt: skip
        cbar = np.full(len(self.terms), np.inf)
        cbar[self.cat_cols] = [params.per_category.get(c, params.category_bar) for c in v.categories]
        lpass = np.where(self.label_scores >= lthr, self.label_scores, -np.inf)
        cpass = np.where(self.cat_best >= cbar, self.cat_scores, self.cat_mass)
        scores = np.maximum(np.maximum(lpass, self.obj_scores), cpass)
        key = np.where(lpass >= scores, self.label_key, np.where(self.obj_scores >= scores, self.obj_key, self.cat_key))
        order = np.lexsort((np.broadcast_to(key, scores.shape), -scores), axis=-1)[:, : params.max_tags]
        top = np.take_along_axis(scores, order, axis=1)
        best = np.where(np.isfinite(top[:, :1]), top[:, :1], 0.0)
        return order, np.isfinite(top) & (top >= params.relative * best)

    def metrics(self, params: ConsumerParams, rows: np.ndarray) -> dict[str, float]:
        order, mask = self.shown(params)
        order, mask = order[rows], mask[rows]
        right = np.take_along_axis(self.right[rows], order, axis=1) & mask
        wrong = np.take_along_axis(self.wrong[rows], order, axis=1) & mask
        animal = self.animal[order] & mask
        n_shown = int(mask.sum())
        return {
            "hit@5": float(right[:, :5].any(axis=1).mean()), "coverage": float(mask.any(axis=1).mean()),
            "precision": float(right.sum() / n_shown) if n_shown else 0.0, "wrong": int(wrong.sum()),
            "animal-without-animal": int((animal.any(axis=1) & self.no_animal[rows]).sum()),
        }  # fmt: skip

    def names(self, params: ConsumerParams) -> list[list[str]]:
        order, mask = self.shown(params)
        return [[self.terms[j] for j, m in zip(o, k, strict=True) if m] for o, k in zip(order, mask, strict=True)]


def evidences(probs: np.ndarray, dets: list[list[Any]], params: ConsumerParams,
              scenes: list[dict[str, float]] | None = None, kinds: list[str] | None = None,
              plain: list[bool] | None = None) -> list[Evidence]:  # fmt: skip
    """Each picture's evidence under `params`; on art (`kinds`, the labels standing in for the style
    head) the classifier names no object alone, as in the pipeline (pipeline.decide.photo_params); on a
    plain background (`plain`) no place word is earned."""
    vocab = default_consumer()
    scenes = scenes or [{} for _ in probs]
    kinds = kinds or ["photo"] * len(probs)
    plain = plain or [False] * len(probs)
    return [evidence_for(p, params, d, vocab, s, b,
                         classifier_object_min=params.classifier_object_min if k == "photo" else NO_OBJECT_ALONE)
            for p, d, s, k, b in zip(probs, dets, scenes, kinds, plain, strict=True)]  # fmt: skip


def shown(evs: list[Evidence], probs: np.ndarray, params: ConsumerParams) -> list[list[Any]]:
    vocab = default_consumer()
    return [tags_from_evidence(ev, p, vocab, params) for ev, p in zip(evs, probs, strict=True)]


def offenders(entries, tags, animals) -> dict[str, list[float]]:
    """Shown tag name -> scores at which it was clearly wrong (or an animal word without an animal)."""
    bad: dict[str, list[float]] = {}
    for e, row in zip(entries, tags, strict=True):
        truth, wrong = set(e["tags"]), set(e["wrong"])
        for t in row:
            if t.name not in truth and (t.name in wrong or (t.name in animals and not truth & animals)):
                bad.setdefault(t.name, []).append(t.score)
    return bad


def right_above(entries, tags, name: str, cut: float) -> int:
    return sum(1 for e, row in zip(entries, tags, strict=True) for t in row
               if t.name == name and t.score > cut and t.name in e["tags"])  # fmt: skip


def fit(entries, probs, dets, min_precision: float, keep: ConsumerParams | None = None,
        ratios: list[float] | None = None, scenes: list[dict[str, float]] | None = None,
        plain: list[bool] | None = None) -> tuple[ConsumerParams, dict[str, Any]]:  # fmt: skip
    """`keep`: take how the evidence adds up (chance discount, member and class floors) from these
    parameters instead of searching it (a 9x smaller search, for a quick refit). `scenes`: each
    picture's scene words from models that did not see it (scripts/train_scenes.py --oof). `plain`:
    whether each picture's subject sits on a plain background (no place word on it)."""
    vocab = default_consumer()
    photos = np.array([e["kind"] == "photo" for e in entries])
    kinds = [e["kind"] for e in entries]
    every = np.ones(len(entries), bool)
    animals = animal_words()
    results: list[tuple[bool, float, ConsumerParams, float]] = []  # (precision ok, gain, params, hit@5)
    grid = None
    for discount, floor, class_floor, det_min, (c_min, c_support), ratio, threshold in itertools.product(
            [keep.chance_discount] if keep else (True, False), [keep.member_floor] if keep else MEMBER_FLOORS,
            [keep.class_floor] if keep else CLASS_FLOORS, DETECTION_MINS, CONFIRMS, ratios or MEMBER_RATIOS,
            GRID["label_threshold"]):
        if ratio == 0.0 and threshold != GRID["label_threshold"][0]:
            continue  # the evidence does not depend on the label threshold: one grid serves them all
        base = ConsumerParams(label_threshold=threshold, member_floor=floor, class_floor=class_floor,
                              chance_discount=discount, detection_min=det_min, member_ratio=ratio,
                              category_mass=dict(CATEGORY_MASS), confirm_min=c_min,
                              confirm_support=c_support)  # fmt: skip
        grid = Grid(entries, evidences(probs, dets, base, scenes, kinds, plain), vocab, like=grid)
        for values in itertools.product(*GRID.values()):
            if ratio > 0.0 and values[0] != threshold:
                continue
            params = ConsumerParams(**dict(zip(GRID, values, strict=True)), member_floor=floor,
                                    class_floor=class_floor, chance_discount=discount, detection_min=det_min,
                                    member_ratio=ratio, category_mass=dict(CATEGORY_MASS), confirm_min=c_min,
                                    confirm_support=c_support)  # fmt: skip
            m_all, m_photo = grid.metrics(params, every), grid.metrics(params, photos)
            bad = m_all["wrong"] + m_all["animal-without-animal"]
            # hit@5 + coverage on the photos, each wrong tag costing about one photo's worth (the
            # per-label step below removes the stubborn ones)
            gain = m_photo["hit@5"] + m_photo["coverage"] - WRONG_COST * bad
            results.append((m_all["precision"] >= min_precision, gain, params, m_photo["hit@5"]))
    usable = [r for r in results if r[0]] or results
    top = max(usable, key=lambda r: r[1])
    # Within one standard error of the best (the fit split is small), take the setting that ignores
    # the most noise: scores above chance, a class floor, categories on their best member alone.
    se = float(np.sqrt(top[3] * (1 - top[3]) / max(int(photos.sum()), 1)))
    near = [r for r in usable if r[1] >= top[1] - se]
    # (the tags' confirm rule included: off unless it earns its place; the objects facet has its own)
    best = max(near, key=lambda r: (r[2].chance_discount, r[2].class_floor, r[2].member_floor,
                                    r[2].member_ratio, r[2].detection_min, r[2].confirm_min, r[1]))  # fmt: skip
    params = best[2]
    evs = evidences(probs, dets, params, scenes, kinds, plain)
    grid = Grid(entries, evs, vocab, like=grid)
    slow = [[t.name for t in row] for row in shown(evs, probs, params)]
    assert grid.names(params) == slow, "the matrix form disagrees with taxonomy/decisions.py"
    # raise-only per-label / per-category thresholds against what is still wrong
    for _ in range(10):
        # a raised label threshold also raises its member bar
        evs = evidences(probs, dets, params, scenes, kinds, plain)
        tags = shown(evs, probs, params)
        bad = offenders(entries, tags, animals)
        changed = False
        for name, scores in bad.items():
            cut = max(scores)
            if len(scores) < MIN_OFFENCES or right_above(entries, tags, name, cut) >= len(scores):
                continue  # a one-off, or raising it would lose at least as many right tags as wrong ones
            for table, names in ((params.per_label, vocab.labels), (params.per_category, vocab.categories)):
                if name in names:
                    table[name] = max(table.get(name, 0.0), round(cut + 0.01, 3))
                    changed = True
        if not changed:
            break
    evs = evidences(probs, dets, params, scenes, kinds, plain)
    names = [[t.name for t in row] for row in shown(evs, probs, params)]
    figures = {
        "fit_all": score(entries, names),
        "fit_photos": score([e for e, p in zip(entries, photos, strict=True) if p],
                            [n for n, p in zip(names, photos, strict=True) if p]),
    }  # fmt: skip
    return params, figures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="the built benchmark (make realphotos)")
    ap.add_argument("--views", default=TAGGER_VIEWS, help=f"the classifier's view set (the tagger's: {TAGGER_VIEWS})")
    ap.add_argument("--merge", default="mean")
    ap.add_argument("--min-precision", type=float, default=0.7)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--no-objects", dest="objects", action="store_false",
                    help="fit without the object detector's detections (as before the detector)")
    ap.add_argument("--keep-structure", action="store_true",
                    help="keep the chance discount and member / class floors of --out, search the rest")
    ap.add_argument("--member-ratio", type=float, help=f"fix it instead of searching {MEMBER_RATIOS}")
    ap.add_argument("--scenes", type=Path, default=SCENES_OOF,
                    help="the FIT pictures' out-of-fold scene words (scripts/train_scenes.py --oof); 'none': without")
    ap.add_argument("--dry-run", action="store_true", help="print, do not write")
    args = ap.parse_args(argv)

    entries = [e for e in load_set(args.dir) if e["split"] == "fit"]
    probs = view_probabilities(entries, args.views, args.merge)
    dets = detections(entries) if args.objects else [[] for _ in entries]
    keep = ConsumerParams.load(args.out) if args.keep_structure else None
    scenes = None
    if str(args.scenes) != "none":
        if not args.scenes.is_file():
            raise SystemExit(f"{args.scenes} not found: run scripts/train_scenes.py --oof {args.scenes} first")
        oof = json.loads(args.scenes.read_text())
        scenes = [oof.get(e["id"], {}) for e in entries]
    old = ConsumerParams.load(args.out) if args.out.is_file() else ConsumerParams()
    params, figures = fit(entries, probs, dets, args.min_precision, keep,
                          [args.member_ratio] if args.member_ratio is not None else None, scenes,
                          on_plain_background(entries))  # fmt: skip
    params.audit_flag_below = old.audit_flag_below  # fitted by bench/bench_vocab.py --audit, not here
    params.meta = {
        "fitted_on": f"fit split of bench/realphotos ({len(entries)} pictures), views {args.views} ({args.merge}), "
                     + ("with" if args.objects else "without") + " the object detector's detections, "
                     + ("with" if scenes else "without") + " out-of-fold scene words",
        "date": datetime.date.today().isoformat(), "min_precision": args.min_precision,
        "views": args.views, "merge": args.merge, "kept_structure": args.keep_structure,
        **{f"{k}_{m}": round(v, 4) for k, fig in figures.items()
           for m, v in fig.items() if m in ("hit@5", "precision", "coverage", "wrong-rate")},
    }  # fmt: skip
    print({k: v for k, v in params.to_dict().items() if k != "meta"})
    for k, fig in figures.items():
        print(k, {m: round(v, 3) for m, v in fig.items() if isinstance(v, float)},
              "wrong tags", fig["counts"]["wrong"], "animal w/o animal", fig["animal-without-animal"])  # fmt: skip
    if not args.dry_run:
        params.save(args.out)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
