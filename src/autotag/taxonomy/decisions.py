"""Decisions that earn each tag: classifier probabilities (and detected objects) -> consumer tags.

- A label's score is the summed probability of its classes ("dog" = the 118 breeds); never-classes
  count for nothing, and so does any class below a small floor (noise spread over many classes).
  A label is shown when its score reaches its threshold (fitted, never below the file's `min`).
- A category is earned by evidence, not by summed noise: it needs one confident member, a label whose
  mass inside the category (or a detected member object's score) reaches the category's bar, so a leaf
  whose probability is spread thinly over 300 insect and bird classes earns no "animal". Once earned,
  its score adds up the members that are each fairly sure (finch + robin + jay for "bird"). A label
  below its file `min`, or below `member_ratio` of its own shown-bar, backs no category; a scene
  category (snow, sky, landscape, ...) needs a label that is itself shown (a bobsled at 0.29 whose own
  bar is 0.6 is not evidence of "snow"); a detected member object or a scene model's word always can.
- Tags far below the best one are dropped (relative cut-off), the list is capped, and an empty list
  is a valid answer: the model is not sure of anything.
Pure numpy; the fitted numbers come from consumer_fitted.json (scripts/fit_consumer.py).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from autotag.taxonomy.consumer import ConsumerVocabulary, default_consumer
from autotag.types import AutotagError, Tag

KIND_ORDER = {"label": 0, "object": 1, "category": 2}
NO_OBJECT_ALONE = 1.01  # a classifier-alone object bar above any summed probability: off (on art, say)
SCENE_CATEGORIES = ("sky", "sunset", "cloud", "night", "space", "snow", "landscape", "mountain", "beach", "desert",
                    "field", "forest", "water", "sea", "lake", "river", "city")  # fmt: skip
# The place words a plain background (a subject cut out onto white, a product photo; encoders/views.py)
# shows none of: the scene models read its white as an overcast sky (FIT: an explosion cut-out as "sky"),
# and an object or label implies a place that is not there: on the plain-background pictures of
# scenes_extra.yaml the 18 place words earned that way were all wrong (a kite's sky on drawn cards, a stop
# sign's city, a nebula's "jellyfish" sea, a "volcano" mountain and landscape); on FIT the rule drops a
# kite's sky on a pizza card and costs the paratrooper cut-out its (labelled) sky.
# Not "space" nor "water": on the 553 plain-background pictures of the FIT half and scenes_extra.yaml the
# shipped scene models' "space" was right 125 times in 127 (planets, the moon, deep-sky photos on black),
# "water" both times (swans, a fish), "sky" neither time (in-sample: the models trained on them; out of fold
# on FIT alike: "space" right on the moon and the earth, "sky" on the explosion not).
NO_PLACE_ON_PLAIN_BACKGROUND = tuple(c for c in SCENE_CATEGORIES if c not in ("space", "water"))

# Categories an unsure member cannot earn either: on the ~1,100 photos and cards of
# bench/realphotos/scenes_extra.yaml, "sport" fired 8 times, and all 4 from a member below its own label
# bar were wrong (a coconut card as a baseball at 0.42, a wrench as a ski at 0.57, a nebula as table
# tennis at 0.49, a spray bottle as a punching bag at 0.27); the right ones had members at 0.72-0.86.
SHOWN_MEMBER_CATEGORIES = (*SCENE_CATEGORIES, "sport")


def scenes_seen(scenes: Mapping[str, float], plain_background: bool) -> dict[str, float]:
    """The scene models' words that count for a picture: on a plain background no place word."""
    if not plain_background:
        return dict(scenes)
    return {word: score for word, score in scenes.items() if word not in NO_PLACE_ON_PLAIN_BACKGROUND}


class Detected(Protocol):
    """What the decisions need of a detection: a COCO class name and a score."""

    label: str
    score: float


@dataclass
class ConsumerParams:
    """The operating point of the decisions; the shipped one is fitted (consumer_fitted.json)."""

    label_threshold: float = 0.3  # a label's score must reach this (or its own entry in per_label)
    per_label: dict[str, float] = field(default_factory=dict)
    category_bar: float = 0.4  # a category needs one member this sure (or its own entry in per_category)
    per_category: dict[str, float] = field(default_factory=dict)
    # members at least this sure also add up (a bird the model splits between finch, robin and jay);
    # 1.0 = the best member alone. Thin noise (0.3% on each of 300 insects) never reaches the floor.
    member_floor: float = 1.0
    # a class below this probability counts for nothing: 118 dog breeds at 0.2% each on a lawn are not a dog
    class_floor: float = 0.0
    # scores above chance: a label behind 118 of 1000 classes gets 11.8% of a clueless prediction's mass
    # for free, so its score is (mass - share) / (1 - share)
    chance_discount: bool = True
    # a label backs its categories only when its score reaches this share of its own threshold
    # (0: any label above its file `min`; 1: only a label that is itself shown)
    member_ratio: float = 0.0
    # categories that say where a picture is (snow, sky, landscape, ...): an object class the model is
    # unsure of is no evidence of a place (a bobsled at 0.29 on an astronaut is not "snow"), so these
    # are earned only by a shown member label, a detected object or the scene models (heads/scenes.py);
    # "sport" too (SHOWN_MEMBER_CATEGORIES: an unsure ball or ski is mostly something else)
    scene_categories: list[str] = field(default_factory=lambda: list(SHOWN_MEMBER_CATEGORIES))
    # category -> a bar on the summed probability of all its classes: a broad category is also earned
    # when the model puts most of its mass on it without one sure member (a dragonfly the model splits
    # over 30 insects). Far above what thin noise adds up to (a leaf's 300 insect and bird classes).
    category_mass: dict[str, float] = field(default_factory=dict)
    detection_min: float = 0.5  # a detected object counts from this score on
    # ... or from confirm_min on, when the classifier agrees: its classes of the same label or category
    # sum to confirm_support (a cut-out broccoli detected at 0.33 that the classifier calls broccoli).
    # Chosen on the real-photo benchmark's FIT half (bench/bench_objects.py); 1.0 turns it off.
    confirm_min: float = 0.2
    confirm_support: float = 0.3
    # The same rule for the objects facet (boxes to show, pipeline/decide.named_objects), kept apart from
    # the tags': a box is a finding, a tag a search word. On the FIT half confirmed boxes find 17 of 24
    # objects instead of 8 (bench/bench_objects.py), while confirmed tags add no hit@5 or coverage there
    # (scripts/fit_consumer.py searches confirm_min / confirm_support for the tags).
    objects_confirm_min: float = 0.2
    objects_confirm_support: float = 0.3
    # A COCO object the classifier alone is sure of: its classes naming it (same label or category, or the
    # COCO line's confirmed_by: a clock, a park bench, a fire truck) sum to this, whatever the detector
    # says; it then counts as an object (score = that sum, no box). Tags and the objects facet apart,
    # as above; photos only (pipeline/decide.py: a drawn horse the classifier calls a dog names no dog).
    # Chosen on the FIT half and 162 more labelled photos (bench/bench_objects.py --sweep-classifier,
    # --splits fit,extra): at 0.6 FIT photos tag 17 of 24 objects instead of 14 and show 20 in the facet
    # instead of 18, the extra photos 41 / 51 of 64 instead of 40 / 50, with no more wrong tags or facet
    # extras; 0.5 adds one FIT tag but 3 extra objects (a ram named dog); above 1 turns it off.
    classifier_object_min: float = 0.6
    objects_classifier_min: float = 0.6
    relative: float = 0.25  # drop tags scoring below this share of the best tag's score
    max_tags: int = 8
    detail_min: float = 0.5  # show a breed/species when its own class is at least this sure
    audit_flag_below: float = 0.1  # the audit flags a user tag the model could see scoring below this
    meta: dict[str, Any] = field(default_factory=dict)  # how the numbers were fitted

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str = "consumer parameters") -> ConsumerParams:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise AutotagError(f"{where}: unknown key {unknown[0]!r}; valid: {', '.join(sorted(known))}")
        return cls(**raw)

    @classmethod
    def load(cls, path: str | Path) -> ConsumerParams:
        p = Path(path)
        if not p.is_file():
            raise AutotagError(f"parameters file {p} does not exist")
        return cls.from_dict(json.loads(p.read_text()), str(p))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n")


@functools.cache
def default_params() -> ConsumerParams:
    """The fitted operating point shipped with the package (defaults if it has not been fitted yet)."""
    f = resources.files("autotag.taxonomy").joinpath("consumer_fitted.json")
    if not f.is_file():
        return ConsumerParams()
    return ConsumerParams.from_dict(json.loads(f.read_text()), "consumer_fitted.json")


@dataclass(frozen=True)
class Evidence:
    """Per-image scores behind the decisions (what fitting and the audit read)."""

    label_scores: np.ndarray  # (L,) summed probability per label, vocab.labels order
    category_best: np.ndarray  # (C,) its best single member (label or object): what earns a category
    category_scores: np.ndarray  # (C,) its score once earned: the best member, or its sure members summed
    objects: dict[str, float]  # COCO name -> best detection score
    # (C,) where its classes' summed mass reached its `category_mass` bar, that mass above chance: the
    # category's score when no member earns it (a member that does keeps the score, and the label first)
    category_mass: np.ndarray | None = None

    def earned_categories(self, bars: np.ndarray) -> np.ndarray:
        """(C,) each category's score where its members reach `bars` or its mass earned it, else 0."""
        members = np.where(self.category_best >= bars, self.category_scores, 0.0)
        return members if self.category_mass is None else np.where(members > 0, members, self.category_mass)


def _label_thresholds(vocab: ConsumerVocabulary, params: ConsumerParams) -> np.ndarray:
    fitted = np.array([params.per_label.get(name, params.label_threshold) for name in vocab.labels])
    return np.maximum(fitted, vocab.label_min)


def member_bars(vocab: ConsumerVocabulary, params: ConsumerParams) -> np.ndarray | None:
    """Per (label, category) group, the score the label needs to back that category (None: the file's
    `min` alone): `member_ratio` of its own threshold, and all of it for a scene category."""
    if params.member_ratio <= 0 and not params.scene_categories:
        return None
    thresholds = _label_thresholds(vocab, params)[vocab.group_label]
    scene = np.isin(np.asarray(vocab.categories)[vocab.group_category], list(params.scene_categories))
    return np.where(scene, thresholds, params.member_ratio * thresholds)


def _above_chance(mass: np.ndarray, share: np.ndarray) -> np.ndarray:
    return np.clip((mass - share) / np.maximum(1.0 - share, 1e-6), 0.0, 1.0)


def evidence_for(
    probs: np.ndarray, params: ConsumerParams | None = None, detections: Iterable[Detected] = (),
    vocab: ConsumerVocabulary | None = None, scenes: Mapping[str, float] | None = None,
    plain_background: bool = False, **overrides: Any,
) -> Evidence:  # fmt: skip
    """One image's (1000,) class probabilities and detections -> label and category scores, every setting
    read from `params` (default: the fitted ones) except the ConsumerParams fields named in `overrides`.

    A label below its member bar (member_bars) backs no category. `scenes`: scene words the scene models
    earned (heads/scenes.py), {category name: probability}; each is a confident member of its category
    and of every category that one implies. `category_mass` ({category: bar}): a category whose classes'
    summed probability (before any class floor) reaches its bar is earned too, scored above chance like
    the rest. A detection counts from `detection_min` on, or from `confirm_min` on when the classifier's
    classes naming the same thing sum to `confirm_support` (then it scores as either model being right).
    An object no detection gave counts when those classes alone sum to `classifier_object_min`.
    `plain_background`: the subject sits on one (a cut-out): no place word is earned, whatever backs it."""
    params = replace(params or default_params(), **overrides)
    vocab = vocab or default_consumer()
    p = np.asarray(probs, np.float64).ravel()
    if len(p) != len(vocab.imagenet):
        raise AutotagError(f"expected {len(vocab.imagenet)} class probabilities, got {len(p)}")
    raw = p
    if params.class_floor > 0.0:
        p = np.where(p >= params.class_floor, p, 0.0)
    kept = vocab.label_index >= 0
    labels = np.bincount(vocab.label_index[kept], weights=p[kept], minlength=len(vocab.labels))
    if params.chance_discount:
        labels = _above_chance(labels, vocab.label_share)
    best = np.zeros(len(vocab.categories))
    summed = np.zeros(len(vocab.categories))
    if len(vocab.group_starts):
        group_mass = np.add.reduceat(p[vocab.group_classes], vocab.group_starts)
        if params.chance_discount:
            group_mass = _above_chance(group_mass, vocab.group_share)
        # a label the file distrusts below its `min` (it fires falsely) backs no category either
        bars = vocab.label_min[vocab.group_label]
        ratio_bars = member_bars(vocab, params)
        bars = bars if ratio_bars is None else np.maximum(ratio_bars, bars)
        group_mass[labels[vocab.group_label] < bars] = 0.0
        np.maximum.at(best, vocab.group_category, group_mass)
        if params.member_floor < 1.0:
            np.add.at(summed, vocab.group_category, np.where(group_mass >= params.member_floor, group_mass, 0.0))
    cat_pos = {c: j for j, c in enumerate(vocab.categories)}
    by_mass = np.zeros(len(vocab.categories))
    if params.category_mass and len(vocab.group_starts):
        mass, share = np.zeros(len(vocab.categories)), np.zeros(len(vocab.categories))
        np.add.at(mass, vocab.group_category, np.add.reduceat(raw[vocab.group_classes], vocab.group_starts))
        np.add.at(share, vocab.group_category, vocab.group_share)
        for name, bar in params.category_mass.items():
            j = cat_pos[name]
            if mass[j] >= bar:
                score = float(_above_chance(mass[j], share[j])) if params.chance_discount else float(mass[j])
                for c in vocab.implied.get(name, (name,)):
                    by_mass[cat_pos[c]] = max(by_mass[cat_pos[c]], score)
    objects: dict[str, float] = {}
    for det in detections:
        entry = vocab.coco.get(det.label)
        score = float(det.score)
        if entry is None or entry.never or score < min(params.detection_min, params.confirm_min):
            continue
        if score < params.detection_min:
            support = vocab.object_support(raw, det.label)
            if support < params.confirm_support:
                continue
            score = 1.0 - (1.0 - score) * (1.0 - support)
        objects[det.label] = max(objects.get(det.label, 0.0), score)
        for c in entry.categories:
            best[cat_pos[c]] = max(best[cat_pos[c]], score)
    for name, score in vocab.named_by_classifier(p, params.classifier_object_min, params.chance_discount).items():
        if score > objects.get(name, 0.0):
            objects[name] = score
            for c in vocab.coco[name].categories:
                best[cat_pos[c]] = max(best[cat_pos[c]], score)
    for word, score in scenes_seen(scenes or {}, plain_background).items():
        if word not in cat_pos:
            raise AutotagError(f"scene word {word!r} is no category of {vocab.path}")
        for c in vocab.implied.get(word, (word,)):
            best[cat_pos[c]] = max(best[cat_pos[c]], float(score))
    if plain_background:  # nor by a label, an object (a kite's sky) or the classes' mass
        places = np.isin(vocab.categories, NO_PLACE_ON_PLAIN_BACKGROUND)
        best[places] = summed[places] = by_mass[places] = 0.0
        labels[np.isin(vocab.labels, NO_PLACE_ON_PLAIN_BACKGROUND)] = 0.0
    return Evidence(labels, best, np.maximum(best, summed), objects, by_mass)


def consumer_tags(
    probs: np.ndarray,
    detections: Sequence[Detected] = (),
    vocab: ConsumerVocabulary | None = None,
    params: ConsumerParams | None = None,
    scenes: Mapping[str, float] | None = None,
    plain_background: bool = False,
) -> list[Tag]:
    """One image's (1000,) ImageNet probabilities and detections (and the scene words its embedding
    earned, heads/scenes.py) -> consumer tags, best first; on a plain background (a cut-out) no place word.

    Labels (kind "label", id = the WordNet id of its best class, detail = breed/species when sure),
    categories (kind "category", id = the category) and detected objects (kind "object", id = "coco:NAME").
    A name reached several ways is shown once, with its best score. May be empty: nothing is sure.
    """
    vocab = vocab or default_consumer()
    params = params or default_params()
    p = np.asarray(probs, np.float64).ravel()
    ev = evidence_for(p, params, detections, vocab, scenes, plain_background)
    return tags_from_evidence(ev, p, vocab, params)


def tags_from_evidence(ev: Evidence, probs: np.ndarray, vocab: ConsumerVocabulary, params: ConsumerParams) -> list[Tag]:
    """The decisions proper, on precomputed evidence (fitting tries many parameters on the same evidence)."""
    best: dict[str, Tag] = {}

    def offer(tag: Tag) -> None:
        old = best.get(tag.name)
        if old is None or (tag.score, -KIND_ORDER[tag.kind]) > (old.score, -KIND_ORDER[old.kind]):
            best[tag.name] = tag

    for j in np.flatnonzero(ev.label_scores >= _label_thresholds(vocab, params)):
        members = np.flatnonzero(vocab.label_index == j)
        top = int(members[np.argmax(probs[members])])
        entry = vocab.imagenet[top]
        detail = entry.detail if entry.detail and probs[top] >= params.detail_min else ""
        offer(Tag(vocab.labels[j], float(ev.label_scores[j]), entry.key, "label", detail))
    for name, score in ev.objects.items():
        offer(Tag(vocab.coco[name].label, score, f"coco:{name}", "object"))
    bars = np.array([params.per_category.get(c, params.category_bar) for c in vocab.categories])
    earned = ev.earned_categories(bars)
    for j in np.flatnonzero(earned > 0):
        offer(Tag(vocab.categories[j], float(earned[j]), vocab.categories[j], "category"))
    if not best:
        return []
    cat_order = {c: j for j, c in enumerate(vocab.categories)}
    tags = sorted(best.values(), key=lambda t: (-t.score, KIND_ORDER[t.kind], cat_order.get(t.name, 0)))
    floor = params.relative * tags[0].score
    return [t for t in tags if t.score >= floor][: params.max_tags]
