"""The decide step: encoder outputs -> tags.

`default_tags` is THE decision of the default (untrained) model, in one place: the consumer vocabulary
(taxonomy/consumer.toml) reads the classifier's probabilities, the detector's objects and the scene
models' words (heads/scenes.py: sky, sunset, sea, ... which ImageNet has no class for), and a
picture the style head calls art gets its style as a tag instead of photo content that makes no sense
on it. `named_objects` is the objects facet: the detections the same decisions count, in their words.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from autotag.config import Settings
from autotag.encoders.detector import OBJECTS_MIN_SCORE
from autotag.heads.scenes import scene_evidence
from autotag.pipeline.item import Item
from autotag.taxonomy.consumer import default_consumer
from autotag.taxonomy.decisions import NO_OBJECT_ALONE, ConsumerParams, consumer_tags, default_params, scenes_seen
from autotag.taxonomy.imagenet import imagenet_hierarchy
from autotag.types import Detection, Tag

COUNTED = ("label", "object")  # the kinds `top_k` counts; categories and the style come on top


@dataclass(frozen=True)
class TagOptions:
    """The user's limits over the decisions (the decisions' own operating point is fitted)."""

    top_k: int = Settings.top_k  # at most this many labels and objects (for a trained model: labels)
    threshold: float = Settings.threshold  # tags below this score are dropped
    categories: bool = True  # broader tags too: categories (animal, plant, ...) or, for raw ImageNet, ancestors
    max_tags: int = 15


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities from logits, along the last axis."""
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def imagenet_tags(probs: np.ndarray, options: TagOptions | None = None, ancestor_threshold: float = 0.3) -> list[Tag]:
    """Raw ImageNet classes (top-k above the threshold) plus WordNet ancestors, best first: the tagger
    before the consumer vocabulary, kept for side-by-side benchmarks."""
    options = options or TagOptions()
    h = imagenet_hierarchy()
    order = np.argsort(-probs)[: options.top_k]
    tags = [
        Tag(h.class_names[i], float(probs[i]), h.class_ids[i], "leaf") for i in order if probs[i] >= options.threshold
    ]
    if options.categories and tags:
        scores = h.ancestor_scores(probs[None])[0]
        for j in np.flatnonzero(scores >= max(ancestor_threshold, options.threshold)):
            tags.append(Tag(h.ancestor_names[j], float(scores[j]), h.ancestor_ids[j], "ancestor"))
    best: dict[str, Tag] = {}
    for t in sorted(tags, key=lambda t: -t.score):  # two synsets may share a name: keep the stronger
        best.setdefault(t.name, t)
    return list(best.values())[: options.max_tags]


def default_tags(item: Item, options: TagOptions, encoder: str | None = None) -> list[Tag]:
    """The default model's tags of one encoded item: consumer labels, detected objects and categories
    (may be empty: nothing is sure), or for art its style and only the content that survives it."""
    assert item.logits is not None
    # scene words (sky, sunset, sea, ...) ImageNet has no class for, from the embedding's scene models
    scenes = scene_evidence(item.embedding, encoder=encoder)  # `encoder`: the embedding's, when known
    # a subject on a plain background (a cut-out on white) shows no place: its white is no overcast sky
    tags = consumer_tags(softmax(item.logits), item.detections or (), params=photo_params(item.style), scenes=scenes,
                         plain_background=item.background is not None)  # fmt: skip
    if item.style is not None:
        tags = styled_tags(item.style, tags)
    return limited(tags, options)


def scene_words(item: Item, encoder: str | None = None) -> dict[str, float]:
    """The scene words an encoded item's embedding earns (heads/scenes.py; `encoder`: the embedding's, when
    known), none of the place words on a plain background (a cut-out): what its hashtags read."""
    return scenes_seen(scene_evidence(item.embedding, encoder=encoder), item.background is not None)


def photo_params(style, params: ConsumerParams | None = None) -> ConsumerParams:  # noqa: ANN001 - a Style or None
    """The decisions for this picture: on art the classifier alone names no object (trained on photos,
    it calls a drawn horse a dog); a picture without a style verdict counts as a photo."""
    params = params or default_params()
    if style is None or style.kind == "photo":
        return params
    return replace(params, classifier_object_min=NO_OBJECT_ALONE, objects_classifier_min=NO_OBJECT_ALONE)


def styled_tags(style, tags: list[Tag]) -> list[Tag]:  # noqa: ANN001 - an autotag.read Style
    """Photos keep their tags; art gets its style first and only the content its style keeps."""
    from autotag.read.style import keep_content_tags

    if style.kind == "photo":
        return tags
    score = style.evidence()[style.style]  # P(art) * P(this style | art): what hashtags read too
    return [Tag(style.style, score, f"style:{style.style}", "style"), *keep_content_tags(style, tags)]


def limited(tags: Sequence[Tag], options: TagOptions) -> list[Tag]:
    """The user's limits: a score floor, at most top_k labels and objects, categories on or off, a cap."""
    out, counted = [], 0
    for tag in tags:
        if tag.score < options.threshold or (tag.kind == "category" and not options.categories):
            continue
        if tag.kind in COUNTED:
            if counted >= options.top_k:
                continue
            counted += 1
        out.append(tag)
    return out[: options.max_tags]


def named_objects(
    detections: Sequence[Detection] | None, probs: np.ndarray | None = None, params: ConsumerParams | None = None
) -> list[Detection] | None:
    """The objects facet: what the detector found at its own operating point (OBJECTS_MIN_SCORE, chosen
    for finding objects, bench_detector), plus weaker detections the classifier confirms (the objects
    facet's confirm rule, `objects_confirm_*`, given `probs`), whose class is not on the never list, named
    by the consumer vocabulary, best first; then the COCO objects the classifier alone is sure of
    (`objects_classifier_min`; photos only, photo_params) that no box shows, without a box (source
    "classifier"). A detection becomes a *tag* only at the stricter fitted `detection_min` (or the tags'
    own rules, consumer_tags): a box is a finding to show, a tag is a word to search by."""
    if detections is None:
        return None
    vocab, params = default_consumer(), params or default_params()
    out = []
    for found in detections:
        entry = vocab.coco.get(found.label)
        if entry is None or entry.never:
            continue
        confirmed = (
            probs is not None
            and found.score >= params.objects_confirm_min
            and vocab.object_support(probs, found.label) >= params.objects_confirm_support
        )
        if found.score >= OBJECTS_MIN_SCORE or confirmed:
            out.append(replace(found, name=entry.label))
    if probs is not None:
        boxed = {o.label for o in out}
        named = vocab.named_by_classifier(probs, params.objects_classifier_min, params.chance_discount,
                                          params.class_floor)  # fmt: skip
        for label, score in sorted(named.items(), key=lambda kv: -kv[1]):
            if label not in boxed:
                out.append(Detection(label, score, None, vocab.coco[label].label, "classifier"))
    return out
