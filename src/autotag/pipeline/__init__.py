"""One pipeline from an image to its tags: decode -> encode -> read -> decide (see `Tagger`)."""

from autotag.ingest import Source
from autotag.pipeline.decide import TagOptions, default_tags, imagenet_tags, named_objects, scene_words, softmax
from autotag.pipeline.encode import EncoderBatcher, OutputCache
from autotag.pipeline.item import FACETS, Item
from autotag.pipeline.readers import Reader, default_readers, picture_readers, register_style_model
from autotag.pipeline.tagger import KEPT_SIDE, Tagger, UserTags, load_detector, user_tags_for

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
    "default_readers",
    "default_tags",
    "imagenet_tags",
    "load_detector",
    "named_objects",
    "picture_readers",
    "register_style_model",
    "scene_words",
    "softmax",
    "user_tags_for",
]
