"""Evaluation: dataset -> encoder outputs (cached) -> scores per dataset label -> decisions -> metrics.

A model is either `default` (the pretrained ImageNet classifier, its 1000 classes folded onto the
dataset's labels through a label mapping) or a trained model folder. Several models and several
decision rules can be evaluated in one call; each (model, rule) pair is one row of the comparison.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from autotag import metrics as M
from autotag.data import Dataset
from autotag.decide import RULES, decide, parse_rule, rules_help
from autotag.types import AutotagError

if TYPE_CHECKING:
    from autotag.pipeline import Tagger

# Fashion-MNIST garment classes -> the nearest ImageNet-1k classes (WordNet ids). ImageNet has no
# plain shirt, so "shirt" takes the classes whose photos are mostly of shirts (suit, ties).
FASHION_TO_IMAGENET: dict[str, list[str]] = {
    "t-shirt": ["n03595614"],  # T-shirt
    "trouser": ["n03594734"],  # jeans
    "pullover": ["n04370456", "n02963159"],  # sweatshirt, cardigan
    "dress": ["n03450230", "n03534580", "n03866082", "n03770439"],  # gown, hoop skirt, overskirt, miniskirt
    "coat": ["n04479046", "n03404251", "n03630383"],  # trench coat, fur coat, lab coat
    "sandal": ["n04133789"],  # sandal
    "shirt": ["n04350905", "n04591157", "n02883205"],  # suit, Windsor tie, bow tie
    "sneaker": ["n04120489", "n03680355"],  # sneaker, slip-on shoe
    "bag": ["n04026417", "n03709823", "n02769748", "n03958227"],  # purse, messenger bag, backpack, plastic bag
    "ankle-boot": ["n03124043", "n03047690"],  # cowboy boot, clogs
}


def _norm(name: str) -> str:
    return name.lower().replace("_", " ").replace("-", " ").strip()


def imagenet_label_mapping(labels: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """(1000, L) 0/1 matrix folding ImageNet classes onto `labels`, and the labels left unmapped.

    Fashion-MNIST labels use FASHION_TO_IMAGENET; any other label maps to the ImageNet class of the
    same name, else to every class beneath the WordNet ancestor of that name (e.g. COCO "dog").
    """
    from autotag.taxonomy.imagenet import imagenet_hierarchy

    h = imagenet_hierarchy()
    by_id = {wnid: i for i, wnid in enumerate(h.class_ids)}
    by_name = {_norm(n): i for i, n in enumerate(h.class_names)}
    ancestors = {_norm(n): j for j, n in enumerate(h.ancestor_names)}
    matrix = np.zeros((len(h.class_ids), len(labels)), np.float32)
    unmapped = []
    for col, label in enumerate(labels):
        if label in FASHION_TO_IMAGENET:
            matrix[[by_id[w] for w in FASHION_TO_IMAGENET[label]], col] = 1
        elif _norm(label) in by_name:
            matrix[by_name[_norm(label)], col] = 1
        elif _norm(label) in ancestors:
            matrix[:, col] = h.ancestor_matrix[:, ancestors[_norm(label)]]
        else:
            unmapped.append(label)
    return matrix, unmapped


# ---------------------------------------------------------------------------------------------
# encoder outputs (the pipeline caches them by content hash and encoder)


@dataclass
class EncodedSet:
    logits: np.ndarray  # (n_ok, 1000)
    embeddings: np.ndarray  # (n_ok, D)
    ok: np.ndarray  # (N,) bool: which records were read
    errors: dict[str, str] = field(default_factory=dict)  # source -> reason
    from_cache: int = 0


def encode_records(tagger: Tagger, sources: Sequence[str], *, cache: bool = True, progress: bool = False) -> EncodedSet:
    """Logits and embeddings of every readable source; unreadable ones are listed, never fatal.

    With cache=True the pipeline's output cache (settings.cache_dir/embeddings) is read and filled,
    so a second evaluation or training run reads them back.
    """
    from autotag.progress import ProgressBar

    spec = tagger.encoder.spec
    n = len(sources)
    logits = np.zeros((n, spec.num_logits), np.float32)
    embeddings = np.zeros((n, spec.embedding_dim), np.float32)
    ok = np.zeros(n, bool)
    errors: dict[str, str] = {}
    hits = 0
    with ProgressBar(n if progress else 0, "encoding") as bar:
        stream = tagger.stream(sources, decide=False, cache=cache, on_item=bar.advance)
        for i, item in enumerate(stream):
            if item.error is not None:
                errors[sources[i]] = item.error
                continue
            logits[i], embeddings[i], ok[i] = item.logits, item.embedding, True
            hits += item.from_cache
    return EncodedSet(logits[ok], embeddings[ok], ok, errors, hits)


# ---------------------------------------------------------------------------------------------
# models: encoder outputs -> scores over the dataset's labels


@dataclass
class ScoredModel:
    name: str
    scores: np.ndarray  # (N, L) in the dataset's label order
    # trained models: (rule name or None for the stored rule, params) -> (N, L) indicator
    decide: Callable[..., np.ndarray] | None = None
    notes: list[str] = field(default_factory=list)


def default_model_scores(logits: np.ndarray, labels: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """ImageNet probabilities folded onto the labels, renormalised over the mapped classes."""
    from autotag.pipeline import softmax

    matrix, unmapped = imagenet_label_mapping(labels)
    if matrix.sum() == 0:
        raise AutotagError(
            "none of the dataset's labels maps to an ImageNet class or WordNet ancestor; "
            "evaluate a trained model instead (--model runs/NAME)"
        )
    mass = softmax(logits.astype(np.float64)) @ matrix
    total = mass.sum(1, keepdims=True)
    scores = np.divide(mass, total, out=np.zeros_like(mass), where=total > 0)
    return scores.astype(np.float32), unmapped


def trained_model_scores(tagger: Tagger, encoded: EncodedSet, dataset: Dataset) -> ScoredModel:
    """A trained model's scores, its columns placed in the dataset's label order by name.

    `dataset` holds the readable records only, aligned with `encoded`.
    """
    model = tagger.model
    assert model is not None
    user_tags = [list(r.user_tags) for r in dataset.records]
    raw = np.asarray(model.predict_scores(encoded.embeddings, encoded.logits, user_tags), np.float32)
    counts = np.asarray(model.predict_count(encoded.embeddings, encoded.logits, user_tags))
    column = {name: j for j, name in enumerate(dataset.labels)}
    model_labels = list(model.labels)
    scores = np.zeros((len(raw), len(dataset.labels)), np.float32)
    for j, name in enumerate(model_labels):
        if name in column:
            scores[:, column[name]] = raw[:, j]
    notes = []
    missing = [lab for lab in dataset.labels if lab not in set(model_labels)]
    if missing:
        notes.append(f"dataset labels the model does not know (scored 0): {', '.join(missing[:10])}")

    def decide(rule: str | None = None, **params: Any) -> np.ndarray:
        out = np.zeros(scores.shape, dtype=np.uint8)
        for i, tags in enumerate(model.decide(raw, counts=counts, rule=rule, **params)):
            for t in tags:
                if t.name in column:
                    out[i, column[t.name]] = 1
        return out

    return ScoredModel(str(getattr(model, "path", "trained")), scores, decide, notes)


# ---------------------------------------------------------------------------------------------
# decision rules: the rules registered in autotag.decide ("name" or "name:argument"), plus "model"

MODEL_RULE = "model: a trained model's own stored rule and thresholds"


def _needs_trained_model(rule: str) -> bool:
    name = rule.partition(":")[0]
    return name == "model" or RULES.get(name).needs in ("counts", "thresholds")


def check_rules(rules: Sequence[str]) -> None:
    for rule in rules:
        if rule.partition(":")[0] not in RULES and rule != "model":
            raise AutotagError(f"unknown decision rule {rule!r}; valid: {MODEL_RULE}; {rules_help()}")
        if rule != "model":
            parse_rule(rule)


def apply_rule(rule: str, scores: np.ndarray, y_true: np.ndarray, model: ScoredModel) -> np.ndarray:
    check_rules([rule])
    name, params = (None, {}) if rule == "model" else parse_rule(rule)
    if _needs_trained_model(rule):
        if model.decide is None:
            raise AutotagError(f"decision rule {rule!r} needs a trained model; the default model has no stored rule")
        return model.decide(name, **params)  # in the model's own label space, mapped onto the dataset's
    return decide(name, scores, truth=y_true, **params)


# ---------------------------------------------------------------------------------------------


@dataclass
class EvalRun:
    """One (model, decision rule) row of an evaluation."""

    model: str
    rule: str
    scores: np.ndarray
    y_pred: np.ndarray
    metrics: dict[str, Any]
    notes: list[str] = field(default_factory=list)


@dataclass
class Evaluation:
    dataset: Dataset  # the evaluated records (readable ones only)
    y_true: np.ndarray
    runs: list[EvalRun]
    errors: dict[str, str]
    info: dict[str, Any] = field(default_factory=dict)

    def table(self) -> list[dict[str, Any]]:
        """One row per run with the headline metrics, as printed and written to report.md."""
        keys = ["C-P", "C-R", "C-F1", "O-P", "O-R", "O-F1", "H-F1", "mAP", "count-accuracy"]
        if self.dataset.single_label:
            keys = ["accuracy", "top5-accuracy", "per-class-accuracy", "macro-F1", "mAP", "ECE"]
        rows = []
        for run in self.runs:
            row: dict[str, Any] = {"model": run.model, "rule": run.rule}
            for k in keys:
                v = run.metrics.get(k)
                row[k] = None if v is None or not np.isfinite(v) else round(float(v), 4)
            rows.append(row)
        return rows


def default_rules(dataset: Dataset, trained: bool) -> list[str]:
    if dataset.single_label:
        return ["argmax"]
    return ["model", "top-k:2", "oracle-k"] if trained else ["threshold:0.3", "top-k:2", "oracle-k"]


def evaluate(
    dataset: Dataset,
    models: Sequence[str] = ("default",),
    rules: Sequence[str] | None = None,
    *,
    limit: int | None = None,
    seed: int = 0,
    cache: bool = True,
    progress: bool = False,
    **settings: Any,
) -> Evaluation:
    """Evaluate each model with each decision rule on `dataset` (already split)."""
    from autotag.pipeline import Tagger

    if rules:
        check_rules(rules)
    if limit:
        dataset = dataset.subset(limit, seed)
    if len(dataset) == 0:
        raise AutotagError(f"dataset {dataset.name} has no images to evaluate")
    runs: list[EvalRun] = []
    skipped: list[str] = []
    errors: dict[str, str] = {}
    kept: Dataset | None = None
    y_true = np.zeros((0, len(dataset.labels)), np.uint8)
    encoded_by_encoder: dict[str, EncodedSet] = {}
    for model_name in models:
        tagger = Tagger.load(None if model_name == "default" else model_name, **settings)
        # a registered (frozen) encoder's outputs are shared by every model built on it;
        # a fine-tuned encoder ("name@folder") is computed for that model alone
        spec_name = tagger.encoder.spec.name
        key = spec_name if "@" not in spec_name else f"{spec_name}:{model_name}"
        encoded = encoded_by_encoder.get(key)
        if encoded is None:
            encoded = encode_records(tagger, dataset.sources, cache=cache, progress=progress)
            encoded_by_encoder[key] = encoded
        errors.update(encoded.errors)
        records = [r for r, keep in zip(dataset.records, encoded.ok, strict=True) if keep]
        kept = Dataset(records, list(dataset.labels), dataset.name, dataset.single_label, dict(dataset.info))
        if len(kept) == 0:
            raise AutotagError(
                f"none of the {len(dataset)} images could be read; first error: {next(iter(errors.values()))}"
            )
        y_true = kept.label_matrix()
        if tagger.model is None:
            scores, unmapped = default_model_scores(encoded.logits, dataset.labels)
            scored = ScoredModel(
                "default", scores, None, [f"unmapped labels: {', '.join(unmapped)}"] if unmapped else []
            )
        else:
            scored = trained_model_scores(tagger, encoded, kept)
        for rule in rules or default_rules(dataset, tagger.model is not None):
            if _needs_trained_model(rule) and scored.decide is None and len(models) > 1:
                # compared with trained models: the default model has no such rule; say so, not silently
                skipped.append(f"default: rule {rule} needs a trained model's stored rule; not evaluated")
                continue
            y_pred = apply_rule(rule, scored.scores, y_true, scored)
            report = M.multilabel_report(y_true, y_pred, scored.scores, labels=list(dataset.labels))
            if dataset.single_label:
                single = M.single_label_report(kept.label_indices(), scored.scores, list(dataset.labels))
                report.update({k: v for k, v in single.items() if k not in ("labels", "n_images")})
            runs.append(EvalRun(scored.name if model_name != "default" else "default", rule, scored.scores, y_pred,
                                report, list(scored.notes)))  # fmt: skip
    assert kept is not None
    info = {"dataset": dataset.name, "n_requested": len(dataset), "n_evaluated": len(kept), "n_failed": len(errors),
            "skipped": skipped}
    return Evaluation(kept, y_true, runs, errors, info)


def write_embeddings(dataset: Dataset, model: str | None = None, progress: bool = True, **settings: Any) -> dict:
    """Fill the embedding cache for every record of a dataset; returns counts for the CLI."""
    from autotag.pipeline import Tagger

    tagger = Tagger.load(model, **settings)
    if "@" in tagger.encoder.spec.name:
        raise AutotagError(
            f"{model} has its own fine-tuned encoder, whose outputs are not cached; "
            "embed with the registered encoder it was trained from (see `autotag models`)"
        )
    encoded = encode_records(tagger, dataset.sources, cache=True, progress=progress)
    return {
        "dataset": dataset.name,
        "encoder": tagger.encoder.spec.name,
        "images": len(dataset),
        "from_cache": encoded.from_cache,
        "encoded": int(encoded.ok.sum()) - encoded.from_cache,
        "failed": len(encoded.errors),
        "cache_dir": str(Path(tagger.settings.cache_dir) / "embeddings"),
    }


def shown_tags_evaluation(
    dataset: Dataset,
    shown: Mapping[str, Sequence[str]],
    *,
    k: int = 5,
    allowed: Sequence[str] | None = None,
    synonyms: bool = False,
) -> dict[str, dict[str, Any]]:
    """Shown-tag metrics (metrics.shown_tags_report) of a tagger's output on a labelled dataset:
    `shown` maps each record's source to the tags shown for it, best first. Right tags are the records'
    labels; wrong tags come from dataset.info["pictures"][source]["wrong"] (the real-photo benchmark).
    Returns one report for all records and one per split, per kind (photo/art) when the pictures say."""
    missing = [r.source for r in dataset.records if r.source not in shown]
    if missing:
        raise AutotagError(f"no shown tags for {len(missing)} of {len(dataset)} pictures, e.g. {missing[0]}")
    pictures = dataset.info.get("pictures", {})
    groups: dict[str, list[Any]] = {"all": list(dataset.records)}
    for rec in dataset.records:
        kind = pictures.get(rec.source, {}).get("kind")
        if rec.split:
            groups.setdefault(rec.split, []).append(rec)
            if kind:
                groups.setdefault(f"{rec.split}/{kind}", []).append(rec)
    return {
        name: M.shown_tags_report(
            [list(shown[r.source]) for r in recs],
            [r.labels for r in recs],
            [pictures.get(r.source, {}).get("wrong", []) for r in recs],
            k=k,
            allowed=allowed,
            synonyms=synonyms,
        )
        for name, recs in groups.items()
    }


SHOWN_METRICS = ("hit@5", "precision", "coverage", "wrong-rate", "pictures-with-wrong", "jargon-rate", "mean-shown")


def is_shown_tags_benchmark(dataset: Dataset) -> bool:
    """A dataset whose pictures list clearly wrong tags (the real-photo benchmark): it is scored on the tags
    a person would see, not by a label mapping."""
    pictures = dataset.info.get("pictures") or {}
    return bool(pictures) and all("wrong" in p for p in pictures.values())


def evaluate_shown_tags(
    dataset: Dataset,
    models: Sequence[str] = ("default",),
    *,
    limit: int | None = None,
    seed: int = 0,
    progress: bool = False,
    **settings: Any,
) -> list[dict[str, Any]]:
    """Tag every picture with each model through the one pipeline and score the shown tags
    (shown_tags_evaluation): one row per model and group (each split, split/kind, all).

    Plain words (the jargon check) are the benchmark's own right and wrong tags plus, for the default
    model, the words of the consumer vocabulary it speaks."""
    from autotag.pipeline import Tagger
    from autotag.taxonomy.consumer import default_consumer

    if limit:
        dataset = dataset.subset(limit, seed)
    pictures = dataset.info.get("pictures", {})
    benchmark_words = {t for r in dataset.records for t in r.labels} | {
        t for p in pictures.values() for t in p.get("wrong", [])
    }
    rows = []
    for model_name in models:
        tagger = Tagger.load(None if model_name == "default" else model_name, **settings)
        shown: dict[str, list[str]] = {}
        for item in tagger.tag_many(dataset.sources, progress=progress):
            shown[item.source] = [t.name for t in item.tags]  # an unreadable picture shows nothing
        allowed = benchmark_words | (set(default_consumer().words()) if tagger.model is None else set())
        reports = shown_tags_evaluation(dataset, shown, allowed=sorted(allowed))
        for group, report in reports.items():
            rows.append({"model": model_name, "set": group, "pictures": report["counts"]["pictures"],
                         **{key: round(float(report[key]), 4) for key in SHOWN_METRICS if key in report}})  # fmt: skip
    return rows
