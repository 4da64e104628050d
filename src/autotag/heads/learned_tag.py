"""A tag taught by example: a small linear model over the library's stored embeddings.

The owner shows a few pictures of a word ("sky", "my cat Shrek") and rejects wrong suggestions; the
model is a logistic regression of those examples against the rest of the library as unlabelled
background (PU-style: a large library's background weighs as much as the examples, each picture very
little, so the few positives hidden in it barely pull the line), with explicit rejections as weighted
negatives, regularised towards the examples' prototype (cosine to their mean). Chosen by measurement
on a development library (bench/bench_teach.py): it beat the prototype from two examples on; with
few examples or a small library it stays that prototype rather than fitting noise.

Features: the embedding's square root (the pooled activations are non-negative and heavy-tailed),
centred on the library's mean and scaled to unit length; the centre is stored with the model so a
new upload is scored without the library. Training is plain numpy: Nesterov's accelerated gradient,
started from the prototype, on a fixed random sample of the background; the model and its
cross-validation folds are fitted together, one matrix product per step.

The threshold aims at a target precision (fit_threshold): the examples' out-of-fold scores (never
their training scores) against the library's give a PU estimate of the precision of every cut, and
the judged examples (accepted and rejected) must reach the target above it too. With fewer than five
examples the tag stays on the library's top 1% until more are judged. Where the two disagree the
higher cut wins: when unsure, fewer pictures get the tag.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autotag.types import AutotagError, Tag

FORMAT_VERSION = 1
TARGET_PRECISION = 0.9
BACKGROUND_SAMPLE = 2000  # background images per fit: enough for the line, small enough for < 100 ms
# Threshold (fit_threshold), chosen on the development library (Fashion-MNIST train images): below
# five examples the out-of-fold scores say too little to estimate precision
ESTIMATE_EXAMPLES = 5
MIN_BIN_RECALL = 0.2  # the share estimate ignores score ranges holding fewer of the examples (noise)
FALLBACK_SHARE = 0.01  # with fewer examples, the tag goes on at most this share of the library
CENTRE_PRIOR = 100  # pictures: a library of 100 is centred on half its mean
PROTOTYPE_RIDGE = 0.01  # the penalty on the prototype's direction, relative to the rest
MAX_ITERATIONS = 30  # started from the prototype: 30 steps ranked as well as 60 (dev library)


def sqrt_features(embeddings: np.ndarray) -> np.ndarray:
    """The square root of the (non-negative) embeddings scaled to unit length, float32: the same for an
    encoder's raw output and for the unit vectors a library's index keeps."""
    x = np.maximum(np.asarray(embeddings, np.float32), 0.0)
    return np.sqrt(x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12))


def library_centre(embeddings: np.ndarray) -> np.ndarray:
    """The mean of the library's square-rooted embeddings, the origin of every learned tag's features,
    shrunk towards zero for a small library (by n / (n + CENTRE_PRIOR)): the mean of a few dozen
    pictures is mostly those pictures, and centring on it pushed a third cat below a rocket."""
    if len(embeddings) == 0:
        raise AutotagError("the library holds no images; add some before teaching a tag")
    n = len(embeddings)
    return sqrt_features(embeddings).mean(0) * (n / (n + CENTRE_PRIOR))


def features(embeddings: np.ndarray, centre: np.ndarray) -> np.ndarray:
    z = sqrt_features(embeddings) - centre
    return z / np.maximum(np.linalg.norm(z, axis=-1, keepdims=True), 1e-12)


def regularisation(n_examples: int) -> float:
    """Penalty on the model's departure from the examples' prototype: strong with one example, weaker as
    examples add up (0.03 / n: on the development library 0.1 / n ranked worse at 5-10 examples and
    0.01 / n at 2)."""
    return 0.03 / max(1, n_examples)


def fit_logistic(
    z: np.ndarray, y: np.ndarray, weights: np.ndarray, lam: float, w0: np.ndarray, iterations: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Several L2-regularised logistic regressions on the same rows at once, one per column of
    `weights` (n, m): min_w,b sum_i weights[i, j] * logloss(y_i, w.z_i + b) + lam/2 |w|^2.

    Returns (w (D, m), b (m,)). Nesterov's accelerated gradient with a fixed step: the rows are unit
    vectors, so the gradient's Lipschitz constant is at most lam + 0.25 * (the largest eigenvalue of
    the weighted second moment, bounded by a few power iterations, + the bias's sum of weights); the
    problem is strongly convex, so a fixed number of steps converges. Fitting the columns together
    turns every step into one matrix product instead of m matrix-vector products.
    """
    z = np.asarray(z, np.float32)
    weights = np.asarray(weights, np.float32).reshape(len(z), -1)
    heaviest = weights.max(1)
    wz = z * np.sqrt(heaviest)[:, None]
    v = np.random.default_rng(0).standard_normal(z.shape[1]).astype(np.float32)
    for _ in range(8):
        v = wz.T @ (wz @ v)
        v /= np.linalg.norm(v) + 1e-12
    top = float(np.linalg.norm(wz.T @ (wz @ v)))
    step = 1.0 / (lam + 0.25 * (top * 1.1 + float(weights.sum(0).max())))
    m = weights.shape[1]
    prior = np.asarray(w0, np.float32) / max(float(np.linalg.norm(w0)), 1e-12)
    w = np.repeat(np.asarray(w0, np.float32).reshape(-1, 1), m, axis=1)
    b = np.zeros(m, np.float32)
    w_prev, b_prev = w.copy(), b.copy()
    yy = np.asarray(y, np.float32)[:, None]
    for k in range(iterations or MAX_ITERATIONS):
        beta = np.float32(k / (k + 3))
        wv, bv = w + beta * (w - w_prev), b + beta * (b - b_prev)
        p = 1.0 / (1.0 + np.exp(-(z @ wv + bv)))
        g = weights * (p - yy)
        w_prev, b_prev = w, b
        # the penalty leaves the prototype's direction (w0) to a light ridge and shrinks the rest: as it
        # grows, the model becomes the prototype, whatever the background looks like
        along = prior @ wv
        penalty = np.float32(lam) * (wv - prior[:, None] * along) + np.float32(lam * PROTOTYPE_RIDGE) * wv
        w = wv - np.float32(step) * (z.T @ g + penalty)
        b = bv - np.float32(step) * g.sum(0)
    return w, b


@dataclass
class LearnedTag:
    """One taught tag: score(embedding) = weights . features(embedding) + bias; tagged when >= threshold."""

    tag: str
    centre: np.ndarray  # (D,) float32
    weights: np.ndarray  # (D,) float32
    bias: float
    threshold: float
    examples: int
    rejections: int
    estimated_precision: float | None = None  # at the threshold, from the judged examples; None: fallback
    info: dict[str, Any] = field(default_factory=dict)

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        embeddings = np.asarray(embeddings, np.float32)
        if embeddings.ndim != 2 or embeddings.shape[1] != len(self.weights):
            raise AutotagError(
                f"learned tag {self.tag!r} scores {len(self.weights)}-d embeddings, got shape {embeddings.shape}"
            )
        return features(embeddings, self.centre) @ self.weights + self.bias

    def applies(self, embeddings: np.ndarray) -> np.ndarray:
        return self.scores(embeddings) >= self.threshold

    def confidence(self, scores: np.ndarray) -> np.ndarray:
        """Scores as shown beside other tags, in (0, 1): 0.5 at the threshold, rising with the margin."""
        return 1.0 / (1.0 + np.exp(-(np.asarray(scores, np.float64) - self.threshold)))

    def summary(self) -> str:
        judged = f"learned from {self.examples} example{'s' * (self.examples != 1)}"
        return judged + (f", {self.rejections} rejection{'s' * (self.rejections != 1)}" if self.rejections else "")

    # -- serialisation: a small JSON document (the vectors base64 float32), kept versioned by the store
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "tag": self.tag,
            "dim": len(self.weights),
            "centre": _pack(self.centre),
            "weights": _pack(self.weights),
            "bias": self.bias,
            "threshold": self.threshold,
            "examples": self.examples,
            "rejections": self.rejections,
            "estimated_precision": self.estimated_precision,
            "info": self.info,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LearnedTag:
        if data.get("format") != FORMAT_VERSION:
            raise AutotagError(f"learned tag model format {data.get('format')!r} is not {FORMAT_VERSION}")
        dim = int(data["dim"])
        return cls(
            tag=str(data["tag"]),
            centre=_unpack(data["centre"], dim),
            weights=_unpack(data["weights"], dim),
            bias=float(data["bias"]),
            threshold=float(data["threshold"]),
            examples=int(data["examples"]),
            rejections=int(data["rejections"]),
            estimated_precision=data.get("estimated_precision"),
            info=dict(data.get("info") or {}),
        )

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, blob: bytes) -> LearnedTag:
        try:
            return cls.from_dict(json.loads(blob))
        except (ValueError, KeyError, TypeError) as exc:
            raise AutotagError(f"a stored learned tag model is unreadable: {exc}") from exc


def _pack(vector: np.ndarray) -> str:
    return base64.b64encode(np.asarray(vector, "<f4").tobytes()).decode("ascii")


def _unpack(text: str, dim: int) -> np.ndarray:
    vector = np.frombuffer(base64.b64decode(text), "<f4").astype(np.float32)
    if vector.shape != (dim,):
        raise AutotagError(f"a stored learned tag vector has {vector.size} values, expected {dim}")
    return vector


# ------------------------------------------------------------------------------------------ training


def _fit_with_folds(
    pos: np.ndarray, neg: np.ndarray, background: np.ndarray, lam: float, folds: int = 5
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """The model on every judged example, and each example's score from a model that did not see it
    (leave-one-out up to `folds` examples, else `folds` folds), all fitted together.

    Positives carry total weight 1, the background total weight 1 (PU-style: the few positives hidden
    in it hardly count), each rejection the weight of one positive. Returns (w, b, positives' out-of-
    fold scores, rejections' out-of-fold scores); with a single positive its out-of-fold score is its
    own score (nothing is left to learn from without it).
    """
    n_pos, n_neg, n_judged = len(pos), len(neg), len(pos) + len(neg)
    z = np.concatenate([pos, neg, background])
    y = np.r_[np.ones(n_pos), np.zeros(n_neg + len(background))]
    n_folds = min(folds, n_judged) if n_pos > 1 else 0
    fold_of = np.arange(n_judged) % max(1, n_folds)
    weights = np.zeros((len(z), 1 + n_folds), np.float32)
    # each background image weighs 1/BACKGROUND_SAMPLE: a large library's sample weighs as much as the
    # examples, a small library's less, so a 20-picture library (where one unlabelled cat is 5% of the
    # background) leaves the model near the examples' prototype instead of fitting its few pictures
    weights[n_judged:] = 1.0 / BACKGROUND_SAMPLE
    for col in range(1 + n_folds):
        kept = np.ones(n_judged, bool) if col == 0 else fold_of != col - 1
        kept_pos = max(1, int(kept[:n_pos].sum()))
        weights[:n_judged, col] = kept / kept_pos
    w0 = pos.mean(0) - (neg.mean(0) if n_neg else 0.0)
    w0 = w0 / max(float(np.linalg.norm(w0)), 1e-12)
    w, b = fit_logistic(z, y, weights, lam, w0)
    out = np.einsum("nd,dn->n", z[:n_judged], w[:, 1 + fold_of]) + b[1 + fold_of] if n_folds else None
    if out is None:
        out = z[:n_judged] @ w[:, 0] + b[0]
    return w[:, 0], float(b[0]), out[:n_pos], out[n_pos:]


def just_above(score: float) -> float:
    """The next float32 above `score`: scores are float32, and numpy compares them with a Python float
    in float32, where a step smaller than float32's would vanish."""
    return float(np.nextafter(np.float32(score), np.float32(np.inf)))


def share_above(sorted_scores: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """The share of `sorted_scores` (ascending) at or above each cut."""
    return (len(sorted_scores) - np.searchsorted(sorted_scores, cuts, side="left")) / len(sorted_scores)


def fit_threshold(
    example_scores: np.ndarray,
    rejection_scores: np.ndarray,
    unlabelled_scores: np.ndarray,
    target: float = TARGET_PRECISION,
) -> tuple[float, float | None]:
    """(threshold, estimated precision there, or None where the threshold is the cautious fallback).

    `example_scores` are the accepted examples' out-of-fold scores. With at least ESTIMATE_EXAMPLES of
    them, the tag's share of the library is estimated PU-style (best bin: the examples are a random
    sample of the tag's pictures, so no score range can hold a larger share of the library than of the
    examples, and the least diluted range bounds the share), which gives the precision of every cut
    through the library; the threshold is the lowest cut that reaches `target`. With fewer examples
    the tag goes on at most the top FALLBACK_SHARE of the library. Rejections can only raise it: the
    judged examples above the threshold must be at least `target` accepted.
    """
    unlabelled = np.sort(np.asarray(unlabelled_scores, np.float64))
    examples = np.sort(np.asarray(example_scores, np.float64))
    rejections = np.asarray(rejection_scores, np.float64)
    n_u, n_e = len(unlabelled), len(examples)
    if n_u == 0:
        return (float(examples[0]) if n_e else 0.0), None
    estimate: float | None = None
    if n_e >= ESTIMATE_EXAMPLES:
        recall = share_above(examples, examples)
        bins = recall >= MIN_BIN_RECALL
        tag_share = float(np.min(share_above(unlabelled, examples[bins]) / recall[bins]))
        cuts = unlabelled[::-1]  # every unlabelled score, highest first: the top i+1 are tagged at cut i
        precision = np.minimum(1.0, tag_share * share_above(examples, cuts) / (np.arange(1, n_u + 1) / n_u))
        reached = np.flatnonzero(precision >= target)
        if len(reached):
            threshold, estimate = float(cuts[reached[-1]]), float(precision[reached[-1]])
        else:
            threshold = just_above(cuts[0])
    else:
        above = int(FALLBACK_SHARE * n_u)  # this many unlabelled pictures may score at or above the cut
        threshold = just_above(unlabelled[n_u - 1 - above])
    if len(rejections):
        judged = np.r_[examples, rejections]
        accepted = np.r_[np.ones(n_e, bool), np.zeros(len(rejections), bool)]
        for t in np.unique(judged):  # ascending: the first cut that reaches the target is the lowest
            above = judged >= t
            if accepted[above].mean() >= target:
                if t > threshold:
                    threshold, estimate = float(t), float(accepted[above].mean())
                break
        else:
            threshold, estimate = just_above(judged.max()), None
    return threshold, estimate


class TeachingSpace:
    """A library's embeddings in the learned tags' feature space, computed once per library state (a
    library keeps one until its images change): every tag taught on it shares the centre, the
    background sample and the features that score the whole library with one matrix product."""

    def __init__(self, embeddings: np.ndarray, seed: int = 0) -> None:
        embeddings = np.asarray(embeddings, np.float32)
        self.centre = library_centre(embeddings)
        self.features = features(embeddings, self.centre)
        rng = np.random.default_rng(seed)
        self._sample = np.sort(rng.choice(len(embeddings), min(BACKGROUND_SAMPLE, len(embeddings)), replace=False))
        self.background = self.features[self._sample]

    def __len__(self) -> int:
        return len(self.features)

    def teach(
        self,
        tag: str,
        examples: np.ndarray,
        rejections: np.ndarray | None = None,
        *,
        judged_rows: Sequence[int] = (),
        target_precision: float = TARGET_PRECISION,
    ) -> LearnedTag:
        """Learn `tag` from example embeddings (and rejected ones) against this library as unlabelled
        background. `judged_rows`: the rows of the library that are examples or rejections, left out
        of the background. No example is an AutotagError."""
        dim = self.features.shape[1]
        examples = np.asarray(examples, np.float32).reshape(-1, dim)
        if len(examples) == 0:
            raise AutotagError(f"teaching {tag!r} needs at least one example picture")
        if rejections is None:
            rejections = np.zeros((0, dim), np.float32)
        pos = features(examples, self.centre)
        neg = features(np.asarray(rejections, np.float32).reshape(-1, dim), self.centre)
        lam = regularisation(len(pos))
        background = self.background
        if len(judged_rows):
            background = background[~np.isin(self._sample, np.asarray(judged_rows, np.int64))]
        w, b, pos_out, neg_out = _fit_with_folds(pos, neg, background, lam)
        threshold, precision = fit_threshold(pos_out, neg_out, background @ w + b, target_precision)
        return LearnedTag(
            tag, self.centre.copy(), w, b, threshold, len(pos), len(neg), precision,
            {"regularisation": lam, "target_precision": target_precision},
        )  # fmt: skip

    def scores(self, model: LearnedTag, embeddings: np.ndarray | None = None) -> np.ndarray:
        """`model`'s score of every library image (in the order the space was built from), by one
        matrix product when the model was taught on this space; `embeddings` (the same images) are
        needed only for a model taught on an earlier state of the library."""
        if np.array_equal(model.centre, self.centre):
            return self.features @ model.weights + model.bias
        if embeddings is None:
            raise AutotagError(f"learned tag {model.tag!r} was taught on another library state; pass the embeddings")
        return model.scores(embeddings)


def teach(
    tag: str,
    library: np.ndarray,
    examples: np.ndarray,
    rejections: np.ndarray | None = None,
    *,
    target_precision: float = TARGET_PRECISION,
) -> LearnedTag:
    """Learn `tag` from example embeddings against a library's embeddings (N, D): TeachingSpace(library).teach."""
    return TeachingSpace(library).teach(tag, examples, rejections, target_precision=target_precision)


def suggestion_order(scores: np.ndarray, threshold: float, judged: Sequence[int] = ()) -> np.ndarray:
    """Indices of not-yet-judged images, the least certain first (nearest the threshold, above or below):
    a judgement there moves the line most."""
    scores = np.asarray(scores, np.float64)
    order = np.argsort(np.abs(scores - threshold), kind="stable")
    if len(judged):
        order = order[~np.isin(order, np.asarray(judged, np.int64))]
    return order


def learned_tags(models: Mapping[str, LearnedTag], embeddings: np.ndarray) -> list[list[Tag]]:
    """The learned tags (kind "learned", id "learned:NAME") each embedding earns, best first. Models
    taught on another encoder's embeddings (another size) are passed over."""
    embeddings = np.asarray(embeddings, np.float32).reshape(len(embeddings), -1)
    out: list[list[Tag]] = [[] for _ in range(len(embeddings))]
    for name, model in models.items():
        if model.weights.shape[0] != embeddings.shape[1]:
            continue
        scores = model.scores(embeddings)
        shown = model.confidence(scores)
        for i in np.flatnonzero(scores >= model.threshold):
            out[i].append(Tag(name, float(shown[i]), f"learned:{name}", "learned"))
    return [sorted(tags, key=lambda t: -t.score) for tags in out]
