"""Multi-label and single-label tagging metrics, pure numpy.

Definitions follow the multi-label image-annotation literature (CNN-RNN, ML-GCN, ...):

- per class c: P_c = TP_c / (TP_c + FP_c), R_c = TP_c / (TP_c + FN_c), F1_c their harmonic mean;
- C-P, C-R = mean of P_c, R_c over every class of the vocabulary; C-F1 = harmonic mean of C-P and C-R
  (not the mean of F1_c: that one is `macro-F1`);
- O-P, O-R = the same ratios over the counts summed across classes; O-F1 = their harmonic mean
  (identical to `micro-F1`, kept under both names because both are used);
- H-F1 = harmonic mean of C-F1 and O-F1;
- mAP = mean over classes with at least one positive of the average precision of their score ranking
  (AP = sum_n (R_n - R_{n-1}) P_n over distinct score thresholds, as scikit-learn computes it).

Edge cases, chosen to agree with scikit-learn's `zero_division=0`:
- a class never predicted has P_c = 0 (and F1_c = 0); it still counts in C-P;
- a class with no positive image has R_c = 0 and still counts in C-R; its AP is NaN and it is left
  out of mAP (`classes_without_positives` in the report says how many there were);
- an image with no true labels adds only false positives; label-count accuracy compares counts
  exactly, so predicting nothing for it is counted correct;
- a harmonic mean with a zero operand is 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from autotag.usertags import normalise_user_tag

# --------------------------------------------------------------------------------------------
# indicator functions: scores (N, L) -> 0/1 decisions (N, L) uint8


def _scores(scores: Any) -> np.ndarray:
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"scores must be a 2-D (images, labels) array, got shape {arr.shape}")
    return arr


def threshold_indicator(scores: Any, threshold: float = 0.5) -> np.ndarray:
    """1 where score >= threshold."""
    return (_scores(scores) >= threshold).astype(np.uint8)


def per_class_threshold_indicator(scores: Any, thresholds: Any) -> np.ndarray:
    """1 where score >= that column's own threshold."""
    arr = _scores(scores)
    thr = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if thr.shape[0] != arr.shape[1]:
        raise ValueError(f"{thr.shape[0]} thresholds for {arr.shape[1]} label columns")
    return (arr >= thr[None, :]).astype(np.uint8)


def per_image_k_indicator(scores: Any, ks: Any) -> np.ndarray:
    """Keep the ks[i] highest-scoring labels of image i (k is clipped to 0..L; ties keep the lower column)."""
    arr = _scores(scores)
    n, n_labels = arr.shape
    k = np.clip(np.rint(np.asarray(ks, dtype=np.float64)).astype(np.int64).reshape(-1), 0, n_labels)
    if k.shape[0] == 1 and n != 1:
        k = np.full(n, k[0])
    if k.shape[0] != n:
        raise ValueError(f"{k.shape[0]} values of k for {n} images")
    order = np.argsort(-arr, axis=1, kind="stable")
    rank = np.empty_like(order)
    rank[np.arange(n)[:, None], order] = np.arange(n_labels)[None, :]
    return (rank < k[:, None]).astype(np.uint8)


def topk_indicator(scores: Any, k: int = 3) -> np.ndarray:
    """Keep the k highest-scoring labels of every image (the usual top-3 protocol of NUS-WIDE papers)."""
    arr = _scores(scores)
    return per_image_k_indicator(arr, np.full(arr.shape[0], k))


# --------------------------------------------------------------------------------------------
# building blocks


def _indicator(y: Any, name: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (images, labels) 0/1 array, got shape {arr.shape}")
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{name} must hold only 0 and 1")
    return arr.astype(bool)


def _ratio(num: np.ndarray | float, den: np.ndarray | float) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)


def harmonic_mean(a: Any, b: Any) -> Any:
    """2ab / (a + b), 0 where a + b == 0; works on scalars and arrays."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    out = _ratio(2 * a * b, a + b)
    return float(out) if out.ndim == 0 else out


def average_precision(y_true: Any, scores: Any) -> float:
    """AP of one ranking: sum over distinct thresholds of (R_n - R_{n-1}) * P_n; NaN with no positive."""
    y = np.asarray(y_true).astype(bool).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    precision, recall, _ = precision_recall_curve(y, s)
    return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))


def precision_recall_curve(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision and recall at each distinct score threshold, highest threshold first."""
    y = np.asarray(y_true).astype(bool).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    # the last position of each run of equal scores: a threshold admits the whole run at once
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1] if len(s) else np.zeros(0, np.int64)
    tp = np.cumsum(y)[last]
    fp = (last + 1) - tp
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, y.sum())
    return precision, recall, s[last]


def per_class_counts(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(TP, FP, FN) per label column."""
    t = _indicator(y_true, "y_true")
    p = _indicator(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true {t.shape} and y_pred {p.shape} differ in shape")
    tp = (t & p).sum(0)
    fp = (~t & p).sum(0)
    fn = (t & ~p).sum(0)
    return tp, fp, fn


# --------------------------------------------------------------------------------------------
# calibration


def reliability_bins(confidences: Any, correct: Any, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Equal-width bins over [0, 1]: count, mean confidence and accuracy per bin (for the diagram)."""
    conf = np.asarray(confidences, dtype=np.float64).reshape(-1)
    hit = np.asarray(correct, dtype=np.float64).reshape(-1)
    if conf.shape != hit.shape:
        raise ValueError("confidences and correct differ in length")
    if conf.size and (conf.min() < 0 or conf.max() > 1):
        raise ValueError("confidences must lie in [0, 1] (probabilities, not logits)")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    mean_conf = _ratio(np.bincount(idx, weights=conf, minlength=n_bins), count)
    accuracy = _ratio(np.bincount(idx, weights=hit, minlength=n_bins), count)
    return {"edges": edges, "count": count, "confidence": mean_conf, "accuracy": accuracy}


def expected_calibration_error(confidences: Any, correct: Any, n_bins: int = 15) -> float:
    """ECE = sum over bins of (bin share) * |accuracy - mean confidence|; 0 for no data."""
    bins = reliability_bins(confidences, correct, n_bins)
    total = bins["count"].sum()
    if total == 0:
        return 0.0
    return float(np.sum(bins["count"] / total * np.abs(bins["accuracy"] - bins["confidence"])))


# --------------------------------------------------------------------------------------------
# reports


def _nan_to_none(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def multilabel_report(
    y_true: Any, y_pred: Any, scores: Any = None, labels: list[str] | None = None, n_bins: int = 15
) -> dict[str, Any]:
    """All multi-label metrics of one prediction, values in 0..1 (counts and MAE in labels).

    y_true, y_pred: (N, L) 0/1; scores: optional (N, L) real scores (higher = more likely) for mAP,
    and, when they lie in [0, 1], for the per-entry expected calibration error.
    """
    t = _indicator(y_true, "y_true")
    p = _indicator(y_pred, "y_pred")
    tp, fp, fn = per_class_counts(t, p)
    n_images, n_labels = t.shape
    names = list(labels) if labels is not None else [str(i) for i in range(n_labels)]
    if len(names) != n_labels:
        raise ValueError(f"{len(names)} label names for {n_labels} columns")

    prec_c = _ratio(tp, tp + fp)
    rec_c = _ratio(tp, tp + fn)
    f1_c = harmonic_mean(prec_c, rec_c)
    c_p = float(prec_c.mean()) if n_labels else 0.0
    c_r = float(rec_c.mean()) if n_labels else 0.0
    c_f1 = harmonic_mean(c_p, c_r)
    o_p = float(_ratio(tp.sum(), tp.sum() + fp.sum()))
    o_r = float(_ratio(tp.sum(), tp.sum() + fn.sum()))
    o_f1 = harmonic_mean(o_p, o_r)

    true_count = t.sum(1)
    pred_count = p.sum(1)
    out: dict[str, Any] = {
        "C-P": c_p,
        "C-R": c_r,
        "C-F1": c_f1,
        "O-P": o_p,
        "O-R": o_r,
        "O-F1": o_f1,
        "H-F1": harmonic_mean(c_f1, o_f1),
        "micro-F1": o_f1,
        "macro-F1": float(f1_c.mean()) if n_labels else 0.0,
        "exact-match": float((t == p).all(1).mean()) if n_images else 0.0,
        "hamming-loss": float((t != p).mean()) if t.size else 0.0,
        "count-accuracy": float((true_count == pred_count).mean()) if n_images else 0.0,
        "count-MAE": float(np.abs(true_count - pred_count).mean()) if n_images else 0.0,
        "mean-true-count": float(true_count.mean()) if n_images else 0.0,
        "mean-predicted-count": float(pred_count.mean()) if n_images else 0.0,
        "n_images": int(n_images),
        "n_classes": int(n_labels),
        "classes_never_predicted": int(((tp + fp) == 0).sum()),
        "classes_without_positives": int(((tp + fn) == 0).sum()),
    }
    ap_c = np.full(n_labels, np.nan)
    if scores is not None:
        s = _scores(scores)
        if s.shape != t.shape:
            raise ValueError(f"scores {s.shape} and y_true {t.shape} differ in shape")
        ap_c = np.array([average_precision(t[:, j], s[:, j]) for j in range(n_labels)])
        valid = np.isfinite(ap_c)
        out["mAP"] = float(ap_c[valid].mean()) if valid.any() else float("nan")
        if s.size and s.min() >= 0 and s.max() <= 1:
            out["ECE"] = expected_calibration_error(s.reshape(-1), t.reshape(-1), n_bins)
    out["per_class"] = [
        {
            "label": names[j],
            "precision": float(prec_c[j]),
            "recall": float(rec_c[j]),
            "f1": float(f1_c[j]),
            "ap": _nan_to_none(ap_c[j]),
            "support": int(tp[j] + fn[j]),
            "predicted": int(tp[j] + fp[j]),
        }
        for j in range(n_labels)
    ]
    return out


def confusion_matrix(y_true: Any, y_pred: Any, n_classes: int) -> np.ndarray:
    """Single-label confusion counts: rows = true class, columns = predicted class."""
    t = np.asarray(y_true, dtype=np.int64).reshape(-1)
    p = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    if t.shape != p.shape:
        raise ValueError("y_true and y_pred differ in length")
    if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= n_classes):
        raise ValueError(f"class indices must lie in 0..{n_classes - 1}")
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def topk_accuracy(y_true: Any, scores: Any, k: int = 5) -> float:
    """Share of images whose true class is among the k highest scores (ties keep the lower column)."""
    t = np.asarray(y_true, dtype=np.int64).reshape(-1)
    s = _scores(scores)
    if t.size == 0:
        return 0.0
    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return float((top == t[:, None]).any(1).mean())


def per_class_accuracy(y_true: Any, y_pred: Any, n_classes: int) -> float:
    """Mean over classes present in y_true of that class's accuracy (balanced accuracy)."""
    cm = confusion_matrix(y_true, y_pred, n_classes)
    support = cm.sum(1)
    present = support > 0
    if not present.any():
        return 0.0
    return float((np.diag(cm)[present] / support[present]).mean())


def single_label_report(y_true: Any, scores: Any, labels: list[str] | None = None, n_bins: int = 15) -> dict[str, Any]:
    """Accuracy, top-5, balanced accuracy, confusion matrix and ECE of the top-1 confidence.

    scores: (N, C); ECE uses them only when every row is a probability vector in [0, 1].
    """
    s = _scores(scores)
    t = np.asarray(y_true, dtype=np.int64).reshape(-1)
    n_classes = s.shape[1]
    pred = np.argmax(s, axis=1) if len(s) else np.zeros(0, np.int64)
    out: dict[str, Any] = {
        "accuracy": float((pred == t).mean()) if t.size else 0.0,
        "top5-accuracy": topk_accuracy(t, s, min(5, n_classes)),
        "per-class-accuracy": per_class_accuracy(t, pred, n_classes),
        "confusion": confusion_matrix(t, pred, n_classes).tolist(),
        "labels": list(labels) if labels is not None else [str(i) for i in range(n_classes)],
        "n_images": int(t.size),
    }
    if s.size and s.min() >= 0 and s.max() <= 1:
        out["ECE"] = expected_calibration_error(s.max(1), pred == t, n_bins)
    return out


# --------------------------------------------------------------------------------------------
# shown tags judged against right / wrong lists (the real-photo benchmark)
#
# A tagger shows a short list of words per picture, best first. Each picture carries the tags that are
# right for it and the tags that would be clearly wrong; a shown tag is one of
#   right     it is among the picture's right tags,
#   wrong     it is among the picture's clearly-wrong tags (and not right),
#   other     neither list names it (counts against precision, not as wrong),
# and, when the caller passes its list of plain words, jargon if the word is not on that list.
# With synonyms=True a shown tag may be several names joined by ", " (WordNet style, "tabby, tabby cat"):
# it matches if any of its names does, and is jargon only if none of its names is a plain word.

RIGHT, WRONG, OTHER = "right", "wrong", "other"


def _names(tag: str, synonyms: bool) -> list[str]:
    parts = tag.split(",") if synonyms else [tag]
    return [n for n in (normalise_user_tag(p) for p in parts) if n]


def mark_shown_tags(
    shown: Sequence[str],
    right: Iterable[str],
    wrong: Iterable[str] = (),
    allowed: Iterable[str] | None = None,
    synonyms: bool = False,
) -> list[tuple[str, bool]]:
    """One (mark, is_jargon) per shown tag: mark is RIGHT, WRONG or OTHER; is_jargon is False when no
    `allowed` list is given."""
    right_set = {normalise_user_tag(t) for t in right}
    wrong_set = {normalise_user_tag(t) for t in wrong}
    allowed_set = None if allowed is None else {normalise_user_tag(t) for t in allowed}
    marks = []
    for tag in shown:
        names = _names(tag, synonyms)
        if any(n in right_set for n in names):
            mark = RIGHT
        elif any(n in wrong_set for n in names):
            mark = WRONG
        else:
            mark = OTHER
        jargon = allowed_set is not None and not any(n in allowed_set for n in names)
        marks.append((mark, jargon))
    return marks


def shown_tags_report(
    shown: Sequence[Sequence[str]],
    right: Sequence[Iterable[str]],
    wrong: Sequence[Iterable[str]] | None = None,
    *,
    k: int = 5,
    allowed: Iterable[str] | None = None,
    synonyms: bool = False,
) -> dict[str, Any]:
    """What users see, per picture list of shown tags (best first) against its right / wrong tags.

    hit@k             pictures with a right tag among their first k shown / pictures
    precision         right shown tags / shown tags (all pictures pooled)
    coverage          pictures with at least one shown tag / pictures
    wrong-rate        wrong shown tags / shown tags;  pictures-with-wrong: pictures showing one / pictures
    jargon-rate       (only with `allowed`) shown tags outside the plain-word list / shown tags;
                      pictures-with-jargon likewise per picture
    other-rate        shown tags neither right nor wrong / shown tags
    Ratios over nothing are 0; `counts` holds the raw numbers.
    """
    n = len(shown)
    wrong = list(wrong) if wrong is not None else [()] * n
    if len(right) != n or len(wrong) != n:
        raise ValueError(f"{n} pictures of shown tags but {len(right)} right lists and {len(wrong)} wrong lists")
    allowed_list = None if allowed is None else list(allowed)
    hits = covered = n_shown = n_right = n_wrong = n_other = n_jargon = pics_wrong = pics_jargon = 0
    for tags, ok, bad in zip(shown, right, wrong, strict=True):
        marks = mark_shown_tags(list(tags), ok, bad, allowed_list, synonyms)
        n_shown += len(marks)
        covered += bool(marks)
        hits += any(m == RIGHT for m, _ in marks[:k])
        n_right += sum(m == RIGHT for m, _ in marks)
        n_wrong += sum(m == WRONG for m, _ in marks)
        n_other += sum(m == OTHER for m, _ in marks)
        n_jargon += sum(j for _, j in marks)
        pics_wrong += any(m == WRONG for m, _ in marks)
        pics_jargon += any(j for _, j in marks)
    out: dict[str, Any] = {
        f"hit@{k}": float(_ratio(hits, n)),
        "precision": float(_ratio(n_right, n_shown)),
        "coverage": float(_ratio(covered, n)),
        "wrong-rate": float(_ratio(n_wrong, n_shown)),
        "pictures-with-wrong": float(_ratio(pics_wrong, n)),
        "other-rate": float(_ratio(n_other, n_shown)),
        "mean-shown": float(_ratio(n_shown, n)),
    }
    if allowed_list is not None:
        out["jargon-rate"] = float(_ratio(n_jargon, n_shown))
        out["pictures-with-jargon"] = float(_ratio(pics_jargon, n))
    out["counts"] = dict(pictures=n, shown=n_shown, right=n_right, wrong=n_wrong, other=n_other)
    out["counts"].update(jargon=n_jargon, hits=hits, covered=covered)
    return out
