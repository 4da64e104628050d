"""Hashtag suggestion with abstention: say something only when the model is sure, and never on
images unlike anything it knows.

A target tag's score is the probability mass of the source labels mapped to it (a sum: "dogs" is
sure when the model hesitates between 20 breeds), discounted by the share of labels it covers.
Each tag has a precision-first operating point, chosen on validation data for a target
precision; below it the suggester says nothing. An
out-of-domain score (energy of the logits by default) above its threshold silences every tag.

The shipped default (photo hashtags over the ImageNet model) loads two package files:
hashtags_imagenet.json (the mapping, made by scripts/build_hashtags_mapping.py) and
hashtags_operating_points.json (made by bench/bench_hashtags.py --write-operating-points),
so it needs neither WordNet nor the text model.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from collections.abc import Mapping as MappingOf
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from autotag.read.style import ART_STYLES
from autotag.suggest.ood import EmbeddingDistanceOOD, ood_score
from autotag.taxonomy.mapping import ConsumerMapping, Mapping
from autotag.types import AutotagError, Tag

DEFAULT_TARGET_PRECISION = 0.90
# Used only when no validation data has been seen: a tag needs most of the probability mass.
FALLBACK_THRESHOLD = 0.90
# each image's scene words, {word: probability} (autotag.heads.scenes.scene_evidence), or None: none read
SceneWords = Sequence[MappingOf[str, float]] | None
# each image's art style evidence, {style: P(art) * P(style | art)} (autotag.read.Style.evidence), or None
StyleWords = Sequence[MappingOf[str, float]] | None



def _read_json(path: Path, what: str, instead: str) -> Any:
    """A JSON file's content, or one line naming the file and what to pass instead."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f" (line {exc.lineno}: {exc.msg})" if isinstance(exc, json.JSONDecodeError) else ""
        raise AutotagError(f"{what} {path} is not JSON{where}; {instead}") from exc

@dataclass
class OperatingPoints:
    """Per-tag score thresholds for a target precision, plus the out-of-domain cut."""

    target_precision: float = DEFAULT_TARGET_PRECISION
    default: float = FALLBACK_THRESHOLD  # for tags without enough validation positives
    per_tag: dict[str, float] = field(default_factory=dict)
    ood_kind: str | None = "energy"
    ood_threshold: float | None = None  # None: no out-of-domain gate
    meta: dict[str, Any] = field(default_factory=dict)  # how they were fitted: data, sizes, curve

    def threshold(self, tag: str) -> float:
        return float(self.per_tag.get(tag, self.default))

    def to_dict(self) -> dict[str, Any]:
        return {
            "target_precision": self.target_precision, "default": self.default, "per_tag": self.per_tag,
            "ood_kind": self.ood_kind, "ood_threshold": self.ood_threshold, "meta": self.meta,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> OperatingPoints:
        known = {"target_precision", "default", "per_tag", "ood_kind", "ood_threshold", "meta"}
        unknown = set(raw) - known
        if unknown:
            raise AutotagError(f"operating points: unknown keys {sorted(unknown)}; valid: {sorted(known)}")
        return cls(**raw)

    @classmethod
    def load(cls, path: str | Path) -> OperatingPoints:
        p = Path(path)
        if not p.is_file():
            raise AutotagError(f"operating points file {p} does not exist")
        return cls.from_dict(_read_json(p, "operating points file", "pass the operating_points.json written "
                                        "beside a mapping by `autotag vocab map`"))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")


def precision_first_threshold(
    scores: np.ndarray, positives: np.ndarray, target: float, min_predictions: int = 10
) -> float | None:
    """The lowest threshold such that every cut at or above it keeps precision >= target (None if none).

    Requiring the whole upper envelope (not one lucky cut) keeps a small validation set from choosing
    a threshold that reaches the target only by chance; cuts keeping fewer than `min_predictions`
    items are too noisy to judge and are ignored.
    """
    scores = np.asarray(scores, np.float64).ravel()
    positives = np.asarray(positives, bool).ravel()
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], positives[order]
    last_of_value = np.r_[s[1:] != s[:-1], True]  # cut after each distinct score value
    hits = np.cumsum(y)[last_of_value]
    counts = np.arange(1, len(s) + 1)[last_of_value]
    values = s[last_of_value]
    valid = counts >= min_predictions
    bad = np.flatnonzero(valid & (hits / counts < target))
    end = bad[0] if len(bad) else len(values)
    usable = np.flatnonzero(valid[:end])
    if not len(usable):
        return None
    return float(values[usable[-1]])


def precision_coverage_curve(
    scores: np.ndarray, truth: np.ndarray, thresholds: np.ndarray | None = None, ood: np.ndarray | None = None
) -> list[dict[str, float]]:
    """For one global threshold each: precision of suggested tags, coverage (images given >= 1 tag), recall."""
    thresholds = np.linspace(0.05, 0.99, 48) if thresholds is None else np.asarray(thresholds)
    silenced = np.zeros(len(scores), bool) if ood is None else np.asarray(ood, bool)
    rows = []
    for t in thresholds:
        pred = (scores >= t) & ~silenced[:, None]
        n = int(pred.sum())
        correct = int((pred & truth.astype(bool)).sum())
        rows.append({
            "threshold": round(float(t), 4),
            "precision": correct / n if n else 1.0,
            "coverage": float(pred.any(axis=1).mean()),
            "recall": correct / max(int(truth.sum()), 1),
            "suggested": n,
        })  # fmt: skip
    return rows


class HashtagSuggester:
    """Maps source-label probabilities to target tags and suggests only confident ones."""

    def __init__(
        self, mapping: Mapping, points: OperatingPoints | None = None, *, max_tags: int = 5,
        embedding_ood: EmbeddingDistanceOOD | None = None,
    ):  # fmt: skip
        self.mapping = mapping
        self.tag_names = list(mapping.tag_names)
        self.weights = mapping.weight_matrix()
        # Share of source labels behind each tag: the mass it gets from a diffuse, clueless prediction.
        self.chance = self.weights.mean(axis=0) if len(self.weights) else np.zeros(len(self.tag_names), np.float32)
        self.points = points or OperatingPoints()
        self.max_tags = max_tags
        self.embedding_ood = embedding_ood
        self.thresholds = np.array([self.points.threshold(t) for t in self.tag_names], np.float64)

    @classmethod
    def default(cls) -> HashtagSuggester:
        """Photo hashtags over the default ImageNet model (shipped mapping and operating points)."""
        files = resources.files("autotag.taxonomy")
        mapping = Mapping.from_dict(json.loads(files.joinpath("hashtags_imagenet.json").read_text()))
        points_file = files.joinpath("hashtags_operating_points.json")
        points = OperatingPoints.from_dict(json.loads(points_file.read_text())) if points_file.is_file() else None
        return cls(mapping, points)

    @classmethod
    def from_files(cls, mapping: str | Path, points: str | Path | None = None) -> HashtagSuggester:
        """A mapping.json from `autotag vocab map`: over the consumer vocabulary (the default model) or
        over a label set's classes (a trained model's labels)."""
        p = Path(mapping)
        if not p.is_file():
            raise AutotagError(f"mapping file {p} does not exist; make one with `autotag vocab map`")
        raw = _read_json(p, "mapping file", "pass the mapping.json `autotag vocab map` writes (not its review.yaml "
                         "or the vocabulary .yaml)")
        beside = p.parent / "operating_points.json"  # written next to it by `autotag vocab map`
        loaded = OperatingPoints.load(points or beside) if points or beside.is_file() else None
        if isinstance(raw, dict) and raw.get("kind") == "consumer":
            consumer_map = ConsumerMapping.from_dict(raw)
            if loaded is None:
                loaded = fit_vocabulary(consumer_map, None)
            return ConsumerHashtagSuggester(consumer_map, loaded)
        return cls(Mapping.from_dict(raw), loaded)

    def mass(self, probs: np.ndarray) -> np.ndarray:
        """(N, S) source probabilities -> (N, T) summed probability of each tag's source labels."""
        probs = np.atleast_2d(np.asarray(probs, np.float32))
        if probs.shape[1] != self.weights.shape[0]:
            raise AutotagError(
                f"the mapping expects {self.weights.shape[0]} source labels but got {probs.shape[1]} scores per image"
            )
        return np.clip(probs @ self.weights, 0.0, 1.0)

    reads_styles = False  # whether a tag is earned by a picture style (callers then read each picture's)

    def scores(self, probs: np.ndarray, scenes: SceneWords = None, styles: StyleWords = None) -> np.ndarray:
        """(N, T) tag scores in [0, 1]: the mass above chance, (mass - share) / (1 - share). `scenes`
        (each image's scene words, heads/scenes.py) and `styles` are not read: a class-level mapping has neither.

        A tag behind 40% of the classes (#animals) collects 40% of a diffuse prediction's mass by
        chance; discounting that keeps broad tags from firing on images the model does not know.
        """
        return np.clip((self.mass(probs) - self.chance) / np.maximum(1.0 - self.chance, 1e-6), 0.0, 1.0)

    def ood_scores(self, logits: np.ndarray | None = None, embeddings: np.ndarray | None = None) -> np.ndarray | None:
        if self.embedding_ood is not None and embeddings is not None:
            return self.embedding_ood.score(embeddings)
        if logits is not None and self.points.ood_kind:
            return ood_score(logits, self.points.ood_kind)
        return None

    def out_of_domain(self, logits: np.ndarray | None = None, embeddings: np.ndarray | None = None) -> np.ndarray:
        """(N,) bool: True where the image is too unlike the training domain to say anything."""
        scores = self.ood_scores(logits, embeddings)
        n = len(np.atleast_2d(logits if logits is not None else embeddings))
        if scores is None or self.points.ood_threshold is None:
            return np.zeros(n, bool)
        return scores > self.points.ood_threshold

    def suggest(
        self, probs: np.ndarray, embeddings: np.ndarray | None = None, *, logits: np.ndarray | None = None,
        scenes: SceneWords = None, styles: StyleWords = None,
    ) -> list[list[Tag]]:  # fmt: skip
        """Confident tags per image, best first; an empty list means the suggester abstains. `scenes`:
        each image's scene words ({word: probability}, autotag.heads.scenes.scene_evidence); `styles`: its
        art style evidence (autotag.read.Style.evidence)."""
        scores = self.scores(probs, scenes, styles)
        silenced = (
            self.out_of_domain(logits, embeddings) if (logits is not None or embeddings is not None)
            else np.zeros(len(scores), bool)
        )  # fmt: skip
        out = []
        for row, quiet in zip(scores, silenced, strict=True):
            if quiet:
                out.append([])
                continue
            keep = np.flatnonzero(row >= self.thresholds)
            keep = keep[np.argsort(-row[keep])][: self.max_tags]
            out.append([Tag(self.tag_names[j], float(row[j]), f"#{self.tag_names[j]}", "hashtag") for j in keep])
        return out

    def fit_operating_points(
        self, probs: np.ndarray, truth: np.ndarray, *, target_precision: float = DEFAULT_TARGET_PRECISION,
        min_positives: int = 30, per_tag_can_lower: bool = False, logits: np.ndarray | None = None,
        ood_kind: str | None = "energy", ood_keep: float = 0.95, meta: dict[str, Any] | None = None,
        scenes: SceneWords = None, styles: StyleWords = None,
    ) -> OperatingPoints:  # fmt: skip
        """Choose thresholds on validation data: (N, S) probs, (N, T) 0/1 truth in tag_names order.

        A tag with at least `min_positives` validation positives gets its own threshold; the others
        share one chosen on all tags pooled. Unless `per_tag_can_lower`, a tag's own threshold may
        only be stricter than the pooled one: with a small validation set, per-tag fits that lower
        the bar are mostly luck. The out-of-domain cut keeps `ood_keep` of the
        validation images (they are in-domain by construction).
        """
        scores = self.scores(probs, scenes, styles)
        truth = np.asarray(truth, bool)
        pooled = precision_first_threshold(scores.ravel(), truth.ravel(), target_precision)
        default = max(pooled if pooled is not None else FALLBACK_THRESHOLD, 0.05)
        per_tag: dict[str, float] = {}
        for j, tag in enumerate(self.tag_names):
            if truth[:, j].sum() >= min_positives:
                t = precision_first_threshold(scores[:, j], truth[:, j], target_precision)
                t = 1.01 if t is None else t  # a tag that cannot reach the target is never suggested
                per_tag[tag] = float(t if per_tag_can_lower else max(t, default))
        ood_threshold = None
        if logits is not None and ood_kind:
            ood_threshold = float(np.quantile(ood_score(logits, ood_kind), ood_keep))
        points = OperatingPoints(target_precision, float(default), per_tag, ood_kind, ood_threshold, dict(meta or {}))
        self.points = points
        self.thresholds = np.array([points.threshold(t) for t in self.tag_names], np.float64)
        return points

    def evaluate(self, probs: np.ndarray, truth: np.ndarray, logits: np.ndarray | None = None,
                 scenes: SceneWords = None, styles: StyleWords = None) -> dict[str, float]:  # fmt: skip
        """Precision of the suggested tags, coverage and recall at the current operating points."""
        suggestions = self.suggest(probs, logits=logits, scenes=scenes, styles=styles)
        col = {t: j for j, t in enumerate(self.tag_names)}
        truth = np.asarray(truth, bool)
        n = sum(len(s) for s in suggestions)
        correct = sum(truth[i, col[t.name]] for i, s in enumerate(suggestions) for t in s)
        return {
            "precision": correct / n if n else 1.0,
            "coverage": sum(1 for s in suggestions if s) / max(len(suggestions), 1),
            "recall": correct / max(int(truth.sum()), 1),
            "suggested": n,
            "images": len(suggestions),
        }


class ConsumerHashtagSuggester(HashtagSuggester):
    """Target tags earned through the consumer vocabulary. A tag's score is the larger of
    - the best evidence among the consumer labels and categories mapped to it, with the tagger's own
      decisions (scores above chance, categories only on a confident member), and among the picture
      styles mapped to it (the style head's P(art) * P(style | art), as the style tag scores it), and
    - the mass of every class behind those terms, above chance (a tag behind 40% of the classes gets
      40% of a clueless prediction for free), never-classes excluded.
    On the fit split the second part adds coverage at the same precision (a bird the model splits
    between 16 species); the chance discount keeps a lawn from being #animals."""

    def __init__(
        self, mapping: ConsumerMapping, points: OperatingPoints | None = None, *, max_tags: int = 5,
        consumer: Any = None, params: Any = None,
    ):  # fmt: skip
        from autotag.taxonomy.consumer import default_consumer
        from autotag.taxonomy.decisions import default_params

        self.mapping = mapping  # type: ignore[assignment]
        self.consumer = consumer or default_consumer()
        self.params = params or default_params()
        self.tag_names = list(mapping.tag_names)
        label_pos = {name: j for j, name in enumerate(self.consumer.labels)}
        cat_pos = {name: j for j, name in enumerate(self.consumer.categories)}
        self._labels = [[label_pos[x] for x in mapping.terms.get(t, []) if x in label_pos] for t in self.tag_names]
        self._cats = [[cat_pos[x] for x in mapping.terms.get(t, []) if x in cat_pos] for t in self.tag_names]
        self._styles = [[x for x in mapping.terms.get(t, []) if x in ART_STYLES] for t in self.tag_names]
        self.reads_styles = any(self._styles)
        self._bars = np.array([self.params.per_category.get(c, self.params.category_bar)
                               for c in self.consumer.categories])  # fmt: skip
        kept = self.consumer.label_index >= 0
        self._classes = []  # per tag: the kept classes behind its terms
        for t in self.tag_names:
            wanted = set(mapping.terms.get(t, []))
            self._classes.append(np.array([i for i, e in enumerate(self.consumer.imagenet)
                                           if kept[i] and (e.label in wanted or wanted & set(e.categories))], int))
        self._share = np.array([len(c) for c in self._classes]) / max(int(kept.sum()), 1)
        self.points = points or OperatingPoints(ood_kind=None)
        self.max_tags = max_tags
        self.embedding_ood = None
        self.thresholds = np.array([self.points.threshold(t) for t in self.tag_names], np.float64)

    def scores(self, probs: np.ndarray, scenes: SceneWords = None, styles: StyleWords = None) -> np.ndarray:
        """(N, T): per tag, the best of its labels' and earned categories' scores (a scene word earns its
        category, as in the tags) and of its styles' evidence, or its classes' mass above chance if larger."""
        from autotag.taxonomy.decisions import NO_OBJECT_ALONE, evidence_for

        probs = np.atleast_2d(np.asarray(probs, np.float64))
        if probs.shape[1] != len(self.consumer.imagenet):
            raise AutotagError(f"consumer hashtags need {len(self.consumer.imagenet)} ImageNet scores per image")
        out = np.zeros((len(probs), len(self.tag_names)))
        if scenes is not None and len(scenes) != len(probs):
            raise AutotagError(f"{len(scenes)} images' scene words for {len(probs)} images' probabilities")
        if styles is not None and len(styles) != len(probs):
            raise AutotagError(f"{len(styles)} images' styles for {len(probs)} images' probabilities")
        for i, row in enumerate(probs):
            # the classifier-alone objects (commit b2c03c1) were never switched on for hashtags: doing so
            # is a change to measure (bench/bench_vocab.py), not a tidy-up
            ev = evidence_for(row, self.params, (), self.consumer, scenes[i] if scenes is not None else None,
                              classifier_object_min=NO_OBJECT_ALONE)  # fmt: skip
            cats = ev.earned_categories(self._bars)
            seen = styles[i] if styles is not None else {}
            for j in range(len(self.tag_names)):
                best = max([ev.label_scores[k] for k in self._labels[j]] + [cats[k] for k in self._cats[j]]
                           + [seen.get(s, 0.0) for s in self._styles[j]], default=0.0)  # fmt: skip
                share = self._share[j]
                mass = (row[self._classes[j]].sum() - share) / max(1.0 - share, 1e-6) if len(self._classes[j]) else 0
                out[i, j] = min(max(best, mass, 0.0), 1.0)
        return out

    @classmethod
    def default(cls) -> ConsumerHashtagSuggester:
        """The shipped photo hashtags over the consumer vocabulary, with operating points fitted on the
        real-photo benchmark's fit split (bench/bench_vocab.py --write)."""
        files = resources.files("autotag.taxonomy")
        mapping = ConsumerMapping.from_dict(json.loads(files.joinpath("hashtags_consumer.json").read_text()))
        points_file = files.joinpath("hashtags_consumer_points.json")
        points = OperatingPoints.from_dict(json.loads(points_file.read_text())) if points_file.is_file() else None
        return cls(mapping, points)


def fit_on_pictures(
    suggester: HashtagSuggester, probs: np.ndarray, truth: np.ndarray, *, target_precision: float = 0.9,
    min_positives: int = 8, meta: dict[str, Any] | None = None, scenes: SceneWords = None,
    styles: StyleWords = None,
) -> OperatingPoints:  # fmt: skip
    """Operating points of a target vocabulary fitted on labelled pictures ((N, 1000) probabilities and
    (N, T) truth): a pooled precision-first threshold, and a tag's own (stricter only) where it has
    `min_positives` positives. Never a flat guess: a tag the pictures cannot vouch for gets the pooled one."""
    return suggester.fit_operating_points(
        probs, truth, target_precision=target_precision, min_positives=min_positives, ood_kind=None, meta=meta,
        scenes=scenes, styles=styles,
    )


_DEFAULT: HashtagSuggester | None = None


def default_suggester() -> HashtagSuggester:
    """The shipped hashtags, through the consumer vocabulary when its mapping ships (it does)."""
    global _DEFAULT
    if _DEFAULT is None:
        has_consumer = resources.files("autotag.taxonomy").joinpath("hashtags_consumer.json").is_file()
        _DEFAULT = ConsumerHashtagSuggester.default() if has_consumer else HashtagSuggester.default()
    return _DEFAULT


def style_words_reader(tagger: Any, suggester: HashtagSuggester) -> Any:
    """A function item -> its art style evidence ({style: score}, {} for a photo) when some tag of the
    suggester is earned by a style and the tagger's encoder has a style model; else None. The items must
    keep their decoded picture (stream with keep_images) for the style head's texture statistics."""
    from autotag.pipeline.readers import style_reader

    read = style_reader(tagger.encoder.spec.name) if suggester.reads_styles else None
    if read is None:
        return None

    def words(item: Any) -> dict[str, float]:
        read(item)
        item.image = item.patch = None  # read: the picture can go
        return item.style.evidence() if item.style is not None else {}

    return words


def iter_hashtags(
    sources: Iterable[Any], *, tagger: Any = None, suggester: HashtagSuggester | None = None
) -> Iterator[dict[str, Any]]:
    """The Python form of `autotag hashtags`: one dict per source, in order (path, tags, out_of_domain,
    ood_score, error); a bad image carries its error instead of stopping the batch."""
    from autotag.pipeline import Tagger, scene_words, softmax

    tagger = tagger or Tagger.default()
    if tagger.model is not None:
        raise AutotagError("hashtags need the default ImageNet model; pass no --model")
    suggester = suggester or default_suggester()
    style_words = style_words_reader(tagger, suggester)
    for item in tagger.stream(sources, decide=False, keep_images=style_words is not None):
        row: dict[str, Any] = {"path": item.source, "content_hash": item.content_hash, "tags": [], "error": item.error}
        if item.error is None:
            logits = item.logits[None]
            scenes = [scene_words(item, tagger.encoder.spec.name)]  # no place word on a cut-out, as in the tags
            styles = [style_words(item)] if style_words is not None else None
            row["tags"] = [t.to_dict() for t in suggester.suggest(softmax(logits), logits=logits, scenes=scenes,
                                                                   styles=styles)[0]]  # fmt: skip
            ood = suggester.ood_scores(logits)
            row["out_of_domain"] = bool(suggester.out_of_domain(logits)[0])
            row["ood_score"] = round(float(ood[0]), 4) if ood is not None else None
        yield row


def suggest_hashtags(sources: Iterable[Any], **kwargs: Any) -> list[dict[str, Any]]:
    """Like iter_hashtags, as a list."""
    return list(iter_hashtags(sources, **kwargs))


def fit_vocabulary(
    mapping: ConsumerMapping, vocab: Any, dataset: str | None = None, *, target_precision: float = 0.9,
    tagger: Any = None,
) -> OperatingPoints:  # fmt: skip
    """Operating points for a target vocabulary over the default model. With a labelled `dataset` (any
    `autotag` dataset spec, e.g. realphotos:DIR or a folder of labelled pictures) they are fitted on it
    (on its `fit` split when it has one); without, every tag takes the pooled threshold that the shipped
    hashtags were fitted to on the real-photo benchmark, never a flat guess."""
    from autotag.taxonomy.mapping import tag_truth

    if dataset is None:
        shipped = default_suggester().points
        return OperatingPoints(target_precision, shipped.default, {}, None, None, {
            "fitted_on": "pooled threshold of the shipped hashtags (real-photo benchmark, fit split); "
                         "pass labelled pictures to fit this vocabulary's own"})  # fmt: skip
    from autotag.data import load_dataset
    from autotag.pipeline import Tagger, scene_words, softmax

    data = load_dataset(dataset)
    records = [r for r in data.records if r.split == "fit"] or list(data.records)
    tagger = tagger or Tagger.default()
    if tagger.model is not None:
        raise AutotagError("fitting a vocabulary over the consumer vocabulary needs the default ImageNet model")
    suggester = ConsumerHashtagSuggester(mapping)
    style_words = style_words_reader(tagger, suggester)
    probs, words, scenes, styles = [], [], [], []
    items = tagger.stream([r.source for r in records], decide=False, keep_images=style_words is not None)
    for record, item in zip(records, items, strict=True):
        if item.error is None:
            probs.append(softmax(item.logits[None])[0])
            words.append(record.labels)
            scenes.append(scene_words(item, tagger.encoder.spec.name))
            styles.append(style_words(item) if style_words is not None else {})
    if not probs:
        raise AutotagError(f"{dataset}: no readable labelled pictures to fit on")
    truth = tag_truth(mapping, vocab, words)
    meta = {"fitted_on": f"{dataset} ({len(probs)} labelled pictures)", "positives": dict(
        zip(mapping.tag_names, (int(x) for x in truth.sum(axis=0)), strict=True))}  # fmt: skip
    return fit_on_pictures(suggester, np.stack(probs), truth, target_precision=target_precision, meta=meta,
                           scenes=scenes, styles=styles if style_words is not None else None)  # fmt: skip
