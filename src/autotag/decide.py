"""Decision rules: scores (N, L) -> 0/1 tags (N, L). Pure numpy, registered by name; the one place
every decision rule lives (`autotag eval`, training's metrics and a model's stored rule all read it).

- `threshold[:T]`: every label whose score reaches one global threshold;
- `per-label`: each label's own threshold (fitted on validation data by `fit_thresholds`, to
  maximise F1 or to reach a target precision);
- `top-k[:K]`: the K highest-scoring labels; `argmax`: the single best one;
- `top-k-predicted`: the k highest, with k predicted per image by the label-count head;
- `predicted-k-floor[:F]`: as `top-k-predicted`, but never a label scoring under F;
- `oracle-k`: the k highest, k being the true number of labels (an upper bound for evaluation).

A rule may take one argument written after a colon ("top-k:2"): `parse_rule` turns such a spec into
(name, params). What a rule needs besides scores (`counts`, `thresholds`, `truth`) is declared with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from autotag.metrics import (
    per_class_threshold_indicator,
    per_image_k_indicator,
    threshold_indicator,
    topk_indicator,
)
from autotag.registry import Registry
from autotag.types import AutotagError


@dataclass(frozen=True)
class Rule:
    apply: Callable[..., np.ndarray]
    usage: str  # one line for help and errors
    argument: str | None = None  # the parameter "name:value" sets (k, threshold, floor)
    argument_type: type = float
    needs: str | None = None  # "counts" (a label-count head), "thresholds" (fitted per label) or "truth"


RULES: Registry[Rule] = Registry("decision rule")


def register_rule(name: str, usage: str, *, argument: str | None = None, argument_type: type = float,
                  needs: str | None = None) -> Callable[[Callable[..., np.ndarray]], Callable[..., np.ndarray]]:
    def wrap(func: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        RULES.register(name, Rule(func, usage, argument, argument_type, needs))
        return func

    return wrap


def list_rules() -> list[str]:
    return RULES.names()


def rules_help() -> str:
    return "; ".join(RULES.get(name).usage for name in RULES.names())


def parse_rule(spec: str) -> tuple[str, dict[str, Any]]:
    """"top-k:2" -> ("top-k", {"k": 2}); an unknown name or a bad argument is one AutotagError."""
    name, colon, arg = str(spec).partition(":")
    rule = RULES.get(name)
    if not colon:
        return name, {}
    if rule.argument is None:
        raise AutotagError(f"decision rule {name!r} takes no argument; {rule.usage}")
    try:
        return name, {rule.argument: rule.argument_type(arg)}
    except ValueError as exc:
        raise AutotagError(f"decision rule {spec!r}: bad argument {arg!r}; {rule.usage}") from exc


def rule_spec(name: str, params: dict[str, Any]) -> str:
    """The inverse of parse_rule: the "name[:value]" spec a (name, params) pair is written as."""
    argument = RULES.get(name).argument
    return f"{name}:{params[argument]:g}" if argument and argument in params else name


def decide(rule: str, scores: Any, **params: Any) -> np.ndarray:
    """Apply the registered rule `rule` with its parameters (threshold, thresholds, k, counts, floor, truth)."""
    return RULES.get(rule).apply(np.asarray(scores, dtype=np.float64), **params)


@register_rule("threshold", "threshold:T: every label scoring >= T (default 0.5)", argument="threshold")
def _threshold(scores: np.ndarray, threshold: float = 0.5, **_: Any) -> np.ndarray:
    return threshold_indicator(scores, threshold)


@register_rule("per-label", "per-label: a trained model's per-label thresholds", needs="thresholds")
def _per_label(scores: np.ndarray, thresholds: Any = None, **_: Any) -> np.ndarray:
    if thresholds is None:
        raise AutotagError("decision rule per-label needs thresholds; fit them with fit_thresholds(...)")
    return per_class_threshold_indicator(scores, thresholds)


@register_rule("top-k", "top-k:K: the K best labels of every image (default 3)", argument="k", argument_type=int)
def _top_k(scores: np.ndarray, k: int = 3, **_: Any) -> np.ndarray:
    return topk_indicator(scores, int(k))


@register_rule("argmax", "argmax: the single best label (single-label datasets)")
def _argmax(scores: np.ndarray, **_: Any) -> np.ndarray:
    return topk_indicator(scores, 1)


def _counts(scores: np.ndarray, counts: Any, what: str = "a predicted label count") -> np.ndarray:
    if counts is None:
        raise AutotagError(f"this decision rule needs {what} per image")
    counts = np.asarray(counts).reshape(-1)
    if len(counts) != len(scores):
        raise AutotagError(f"{len(counts)} label counts for {len(scores)} images")
    return counts


@register_rule("top-k-predicted", "top-k-predicted: the k best, k from a trained model's label-count head",
               needs="counts")
def _top_k_predicted(scores: np.ndarray, counts: Any = None, **_: Any) -> np.ndarray:
    return per_image_k_indicator(scores, _counts(scores, counts))


@register_rule("predicted-k-floor", "predicted-k-floor:F: as top-k-predicted, never a label scoring under F "
               "(default 0.1)", argument="floor", needs="counts")
def _predicted_k_floor(scores: np.ndarray, counts: Any = None, floor: float = 0.1, **_: Any) -> np.ndarray:
    return per_image_k_indicator(scores, _counts(scores, counts)) & threshold_indicator(scores, floor)


@register_rule("oracle-k", "oracle-k: the true number of labels of each image (an upper bound, as in the "
               "literature)", needs="truth")
def _oracle_k(scores: np.ndarray, truth: Any = None, **_: Any) -> np.ndarray:
    if truth is None:
        raise AutotagError("decision rule oracle-k needs the true labels (truth=...); it is for evaluation only")
    return per_image_k_indicator(scores, _counts(scores, np.asarray(truth).sum(1), "the true label count"))


# Threshold objectives: (tp, predicted, positives, cut scores, target precision) at every distinct cut of
# one label's scores, best first -> the chosen threshold.
OBJECTIVES: Registry[Callable[..., float]] = Registry("threshold objective")


@OBJECTIVES.register("f1")
def _best_f1(tp: np.ndarray, predicted: np.ndarray, positives: int, cut_scores: np.ndarray, **_: Any) -> float:
    return float(cut_scores[int(np.argmax(2 * tp / (predicted + positives)))])


@OBJECTIVES.register("precision")
def _target_precision(tp: np.ndarray, predicted: np.ndarray, positives: int, cut_scores: np.ndarray,
                      target_precision: float = 0.9, **_: Any) -> float:
    ok = np.nonzero(tp / predicted >= target_precision)[0]
    return float(cut_scores[ok[-1]] if len(ok) else cut_scores[0] + 1e-9)


def fit_thresholds(y_true: Any, scores: Any, objective: str = "f1", target_precision: float = 0.9,
                   default: float = 0.5) -> np.ndarray:
    """Per-label thresholds from validation data.

    objective "f1": the threshold maximising that label's F1; "precision": the lowest threshold whose
    precision reaches `target_precision` (most recall at that precision; the highest score seen when
    none does). Labels without a positive example keep `default`.
    """
    choose = OBJECTIVES.get(objective)
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
        out[j] = choose(tp[last_of_tie], predicted[last_of_tie], positives, sorted_scores[last_of_tie],
                        target_precision=target_precision)
    return out
