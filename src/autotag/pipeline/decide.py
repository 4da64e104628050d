"""The decide step: encoder outputs -> tags.

`default_tags` is THE decision of the default (untrained) model, in one place: whatever replaces it
(a consumer vocabulary reading the classifier and the detector) takes an Item and returns its tags.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autotag.config import Settings
from autotag.pipeline.item import Item
from autotag.taxonomy.imagenet import imagenet_hierarchy
from autotag.types import Tag


@dataclass(frozen=True)
class TagOptions:
    top_k: int = Settings.top_k  # at most this many leaf labels
    threshold: float = Settings.threshold  # leaf labels below this score are dropped
    ancestors: bool = True  # add WordNet ancestors (default ImageNet model only)
    ancestor_threshold: float = 0.3  # an ancestor needs at least this much probability mass
    max_tags: int = 15


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities from logits, along the last axis."""
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def imagenet_tags(probs: np.ndarray, options: TagOptions) -> list[Tag]:
    """Leaf classes (top-k above the threshold) plus informative WordNet ancestors, best first."""
    h = imagenet_hierarchy()
    order = np.argsort(-probs)[: options.top_k]
    tags = [
        Tag(h.class_names[i], float(probs[i]), h.class_ids[i], "leaf") for i in order if probs[i] >= options.threshold
    ]
    if options.ancestors and tags:
        scores = h.ancestor_scores(probs[None])[0]
        for j in np.flatnonzero(scores >= max(options.ancestor_threshold, options.threshold)):
            tags.append(Tag(h.ancestor_names[j], float(scores[j]), h.ancestor_ids[j], "ancestor"))
    best: dict[str, Tag] = {}
    for t in sorted(tags, key=lambda t: -t.score):  # two synsets may share a name: keep the stronger
        best.setdefault(t.name, t)
    return list(best.values())[: options.max_tags]


def default_tags(item: Item, options: TagOptions) -> list[Tag]:
    """The default model's tags of one encoded item: its ImageNet classes and their ancestors."""
    assert item.logits is not None
    return imagenet_tags(softmax(item.logits), options)
