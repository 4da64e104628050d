"""Out-of-domain scores: "this image is unlike anything the model knows". Higher = more out of domain.

Two families:
- from a classifier's logits (no extra data needed): `energy` (-logsumexp), `max_logit`, `msp`
  (1 - max softmax probability), `entropy`; registered names, see `OOD_SCORES`;
- from embeddings: `EmbeddingDistanceOOD`, the cosine distance to the k-th nearest training
  embedding, fitted on the model's own training images.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from autotag.pipeline import softmax
from autotag.types import AutotagError


def _logsumexp(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=-1, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True)))[..., 0]


def energy_score(logits: np.ndarray) -> np.ndarray:
    return -_logsumexp(np.asarray(logits, np.float64))


def max_logit_score(logits: np.ndarray) -> np.ndarray:
    return -np.asarray(logits, np.float64).max(axis=-1)


def msp_score(logits: np.ndarray) -> np.ndarray:
    return 1.0 - softmax(np.asarray(logits, np.float64)).max(axis=-1)


def entropy_score(logits: np.ndarray) -> np.ndarray:
    p = softmax(np.asarray(logits, np.float64))
    return -(p * np.log(np.clip(p, 1e-12, None))).sum(axis=-1)


OOD_SCORES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "energy": energy_score,
    "max_logit": max_logit_score,
    "msp": msp_score,
    "entropy": entropy_score,
}


def ood_score(logits: np.ndarray, kind: str = "energy") -> np.ndarray:
    """(N, C) logits -> (N,) out-of-domain scores of the registered kind."""
    if kind not in OOD_SCORES:
        raise AutotagError(f"unknown out-of-domain score {kind!r}; valid: {', '.join(sorted(OOD_SCORES))}")
    return OOD_SCORES[kind](np.atleast_2d(logits))


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclass
class EmbeddingDistanceOOD:
    """Cosine distance to the k-th nearest of the training embeddings (a non-parametric density proxy)."""

    k: int = 10

    def fit(self, embeddings: np.ndarray) -> EmbeddingDistanceOOD:
        if len(embeddings) <= self.k:
            raise AutotagError(f"need more than k={self.k} training embeddings to fit the out-of-domain detector")
        self.reference_ = _unit(embeddings)
        return self

    def score(self, embeddings: np.ndarray, batch: int = 1024) -> np.ndarray:
        if not hasattr(self, "reference_"):
            raise AutotagError("EmbeddingDistanceOOD is not fitted: call fit(training_embeddings) first")
        queries = _unit(np.atleast_2d(embeddings))
        out = np.empty(len(queries), np.float32)
        for start in range(0, len(queries), batch):
            sims = queries[start : start + batch] @ self.reference_.T
            kth = np.partition(-sims, self.k - 1, axis=1)[:, self.k - 1]
            out[start : start + batch] = 1.0 + kth  # 1 - (k-th highest similarity)
        return out


def auroc(in_domain_scores: np.ndarray, out_of_domain_scores: np.ndarray) -> float:
    """Probability that an out-of-domain item scores higher than an in-domain one (ties count half)."""
    a = np.asarray(in_domain_scores, np.float64).ravel()
    b = np.asarray(out_of_domain_scores, np.float64).ravel()
    if len(a) == 0 or len(b) == 0:
        raise AutotagError("AUROC needs at least one in-domain and one out-of-domain score")
    allv = np.concatenate([a, b])
    order = allv.argsort(kind="mergesort")
    ranks = np.empty(len(allv))
    sorted_v = allv[order]
    # average ranks over ties
    i = 0
    while i < len(allv):
        j = i
        while j + 1 < len(allv) and sorted_v[j + 1] == sorted_v[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    rank_sum = ranks[len(a) :].sum()
    return float((rank_sum - len(b) * (len(b) + 1) / 2.0) / (len(a) * len(b)))
