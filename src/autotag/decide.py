"""Decision rules: scores (N, L) -> 0/1 tags (N, L). Pure numpy, registered by name.

- `threshold`: every label whose score reaches one global threshold;
- `per-label`: each label's own threshold (fitted on validation data by `fit_thresholds`, to
  maximise F1 or to reach a target precision);
- `top-k`: the k highest-scoring labels;
- `top-k-predicted`: the k highest, with k predicted per image by the label-count head;
- `predicted-k-floor`: as `top-k-predicted`, but never a label scoring under `floor`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from autotag.metrics import (
    per_class_threshold_indicator,
    per_image_k_indicator,
    threshold_indicator,
    topk_indicator,
)
from autotag.types import AutotagError

Rule = Callable[..., np.ndarray]
_RULES: dict[str, Rule] = {}
NEEDS_COUNTS = {"top-k-predicted", "predicted-k-floor"}


def register_rule(name: str) -> Callable[[Rule], Rule]:
    def wrap(func: Rule) -> Rule:
        _RULES[name] = func
        return func

    return wrap


def list_rules() -> list[str]:
    return sorted(_RULES)


def decide(rule: str, scores: Any, **params: Any) -> np.ndarray:
    """Apply the registered rule `rule` with its parameters (threshold, thresholds, k, counts, floor)."""
    if rule not in _RULES:
        raise AutotagError(f"unknown decision rule {rule!r}; valid rules: {', '.join(list_rules())}")
    return _RULES[rule](np.asarray(scores, dtype=np.float64), **params)


@register_rule("threshold")
def _threshold(scores: np.ndarray, threshold: float = 0.5, **_: Any) -> np.ndarray:
    return threshold_indicator(scores, threshold)


@register_rule("per-label")
def _per_label(scores: np.ndarray, thresholds: Any = None, **_: Any) -> np.ndarray:
    if thresholds is None:
        raise AutotagError("decision rule per-label needs thresholds; fit them with fit_thresholds(...)")
    return per_class_threshold_indicator(scores, thresholds)


@register_rule("top-k")
def _top_k(scores: np.ndarray, k: int = 3, **_: Any) -> np.ndarray:
    return topk_indicator(scores, int(k))


def _counts(scores: np.ndarray, counts: Any) -> np.ndarray:
    if counts is None:
        raise AutotagError("this decision rule needs a predicted label count per image (counts=...)")
    counts = np.asarray(counts).reshape(-1)
    if len(counts) != len(scores):
        raise AutotagError(f"{len(counts)} label counts for {len(scores)} images")
    return counts


@register_rule("top-k-predicted")
def _top_k_predicted(scores: np.ndarray, counts: Any = None, **_: Any) -> np.ndarray:
    return per_image_k_indicator(scores, _counts(scores, counts))


@register_rule("predicted-k-floor")
def _predicted_k_floor(scores: np.ndarray, counts: Any = None, floor: float = 0.1, **_: Any) -> np.ndarray:
    return per_image_k_indicator(scores, _counts(scores, counts)) & threshold_indicator(scores, floor)


def fit_thresholds(y_true: Any, scores: Any, objective: str = "f1", target_precision: float = 0.9,
                   default: float = 0.5) -> np.ndarray:
    """Per-label thresholds from validation data.

    objective "f1": the threshold maximising that label's F1; "precision": the lowest threshold whose
    precision reaches `target_precision` (most recall at that precision; the highest score seen when
    none does). Labels without a positive example keep `default`.
    """
    if objective not in ("f1", "precision"):
        raise AutotagError(f"unknown threshold objective {objective!r}; valid: f1, precision")
    y = np.asarray(y_true) > 0
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or s.ndim != 2:
        raise AutotagError(f"y_true {y.shape} and scores {s.shape} must be the same (images, labels) shape")
    out = np.full(s.shape[1], float(default))
    for j in range(s.shape[1]):
        positives = int(y[:, j].sum())
        if positives == 0:
            continue
        order = np.argsort(-s[:, j], kind="stable")
        sorted_scores = s[order, j]
        tp = np.cumsum(y[order, j])
        predicted = np.arange(1, len(order) + 1)
        last_of_tie = np.r_[sorted_scores[1:] != sorted_scores[:-1], True]  # cut only between distinct scores
        tp, predicted, cut_scores = tp[last_of_tie], predicted[last_of_tie], sorted_scores[last_of_tie]
        precision = tp / predicted
        if objective == "f1":
            f1 = 2 * tp / (predicted + positives)
            out[j] = cut_scores[int(np.argmax(f1))]
        else:
            ok = np.nonzero(precision >= target_precision)[0]
            out[j] = cut_scores[ok[-1]] if len(ok) else sorted_scores[0] + 1e-9
    return out
