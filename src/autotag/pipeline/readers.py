"""The read step's readers: facets taken from the picture the decode step already has (no second
decode) and from the encoder's embedding. Each is a function Item -> None filling one facet.

- colours: dominant colours named from the shared palette (autotag.read.dominant_colors)
- properties: orientation, aspect, resolution class, dark/bright (autotag.read.picture_properties)
- style: photo or art (and art's style), a small head over the embedding of the encoder it was trained
  on; other encoders have no style head, so their items carry no style.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from autotag.pipeline.item import Item

Reader = Callable[[Item], None]
# (N, D) embeddings, the N decoded pictures kept for readers, their N decoded-resolution centre patches
# -> one autotag.read.Style per row
StyleModel = Callable[[np.ndarray, list, list], list]


def read_colors_and_properties(item: Item) -> None:
    """Both facets from one thumbnail: colours and the lightness behind dark/bright are read from
    the same pixels in OKLCh, made once."""
    from autotag.read import ColorSample, dominant_colors, picture_properties

    if item.image is None:
        return
    sample = ColorSample.of(item.image)
    item.colors = dominant_colors(sample)
    width, height = item.meta.get("width") or item.image.width, item.meta.get("height") or item.image.height
    item.properties = picture_properties(int(width), int(height), item.image, sample)


def _shipped_style_head() -> StyleModel:
    from autotag.read.style import picture_styles

    return picture_styles


# encoder name -> a loader of the style model reading that encoder's embeddings
STYLE_MODELS: dict[str, Callable[[], StyleModel]] = {"efficientnet_lite0": _shipped_style_head}


def register_style_model(encoder_name: str, loader: Callable[[], StyleModel]) -> None:
    """Give the embeddings of `encoder_name` a photo-or-art model (tests register one for the fake encoder)."""
    STYLE_MODELS[encoder_name] = loader


def style_reader(encoder_name: str) -> Reader | None:
    """A reader filling `item.style` from the item's embedding, or None when no style model reads this encoder."""
    loader = STYLE_MODELS.get(encoder_name)
    if loader is None:
        return None
    model = loader()

    def read_style(item: Item) -> None:
        # the shipped head also reads the texture of the picture kept for readers (long side 512) and
        # of its centre patch at the decoded resolution
        if item.embedding is not None and item.image is not None:
            item.style = model(np.asarray(item.embedding, np.float32)[None], [item.image], [item.patch])[0]

    return read_style


def picture_readers() -> list[Reader]:
    """Readers any model gets: they look at the pixels, not at a model's outputs."""
    return [read_colors_and_properties]


def default_readers(encoder_name: str) -> list[Reader]:
    """The default model's readers: colours, picture facts and, where a style model reads this encoder, style."""
    style = style_reader(encoder_name)
    return [*picture_readers(), *([style] if style is not None else [])]
