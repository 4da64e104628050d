"""One pipeline from an image to its tags: decode -> encode -> read -> decide (see `Tagger`)."""

from autotag.ingest import Source
from autotag.pipeline.decide import TagOptions, default_tags, imagenet_tags, softmax
from autotag.pipeline.encode import EncoderBatcher, OutputCache
from autotag.pipeline.item import FACETS, Item
from autotag.pipeline.tagger import KEPT_SIDE, Reader, Tagger, UserTags, user_tags_for

__all__ = [
    "FACETS",
    "KEPT_SIDE",
    "EncoderBatcher",
    "Item",
    "OutputCache",
    "Reader",
    "Source",
    "TagOptions",
    "Tagger",
    "UserTags",
    "default_tags",
    "imagenet_tags",
    "softmax",
    "user_tags_for",
]
