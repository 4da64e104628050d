"""Several views of one picture, for pictures wider (or taller) than the network's square input.

A 16:9 wallpaper loses 44% of its area to the centre crop. The view sets here look at more of it:
- "center": the centre square only (the classic single view);
- "center+full": the centre square plus the whole picture letter-boxed onto a neutral square;
- "thirds": square crops at the start, middle and end of the long side (they cover all of it);
- "thirds+full": both;
- "whole-if-plain": one view, the tagger's: a wide picture whose subject sits on a plain background (a
  photo cut-out flattened onto white, a product shot) whole, padded to a square with that background;
  any other picture's centre square. A cut-out is tight around its object, so the centre crop of a wide
  one cuts it (a syringe 640x128 px seen as a ruler, a candle 192x648 as matches).
Pictures close to square (aspect below `min_aspect`) get only the centre view, so they cost nothing
extra. `merge_views` turns the views' class probabilities into one vector ("mean" or "max").
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

from autotag.encoders.base import EncoderSpec, preprocess
from autotag.types import AutotagError

DEFAULT_MIN_ASPECT = 1.2
# A plain background: at least PLAIN_SHARE of the pixels of the picture's border (a ring PLAIN_RING of its
# short side thick) lie within PLAIN_TOLERANCE (0-255, in every channel) of their median colour.
PLAIN_RING = 0.02
PLAIN_TOLERANCE = 16
PLAIN_SHARE = 0.8
PLAIN_SAMPLES = 256  # border pixels read per side and ring row: a 4K picture's border costs what a thumbnail's does
# ... and a subject on it: at least PLAIN_SUBJECT of a PLAIN_GRID x PLAIN_GRID sample of the picture is not
# that colour (a flat or faintly noisy picture is all background, nothing to cut or to pad)
PLAIN_SUBJECT = 0.05
PLAIN_GRID = 32
# The one view the tagger's classifier sees (pipeline/tagger.py). Cached encoder outputs are keyed by this
# name (pipeline/encode.OutputCache, the bench and training caches): a new view needs a new name.
TAGGER_VIEWS = "whole-if-plain"

RGB = tuple[int, int, int]


def _normalise(im: Image.Image, spec: EncoderSpec) -> np.ndarray:
    arr = (np.asarray(im, dtype=np.float32) - spec.mean) / spec.std
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def letterbox(im: Image.Image, spec: EncoderSpec, fill: RGB | None = None) -> np.ndarray:
    """The whole picture, long side scaled to the input size, padded with `fill` (default: the
    normalisation mean, 0 after it)."""
    size = spec.input_size
    scale = size / max(im.size)
    w, h = max(1, round(im.width * scale)), max(1, round(im.height * scale))
    if fill is None:
        fill = (int(round(spec.mean)),) * 3
    canvas = Image.new("RGB", (size, size), fill)
    canvas.paste(im.resize((w, h), Image.BILINEAR, reducing_gap=3.0), ((size - w) // 2, (size - h) // 2))
    return _normalise(canvas, spec)


def thirds(im: Image.Image, spec: EncoderSpec) -> list[np.ndarray]:
    """Three squares along the long side: start, middle, end (overlapping when the aspect is below 3)."""
    size = spec.input_size
    short = min(im.size)
    long_side = max(im.size)
    out = []
    for offset in (0, (long_side - short) // 2, long_side - short):
        box = (offset, 0, offset + short, short) if im.width >= im.height else (0, offset, short, offset + short)
        out.append(_normalise(im.resize((size, size), Image.BILINEAR, box=box, reducing_gap=3.0), spec))
    return out


def _center(im: Image.Image, spec: EncoderSpec) -> list[np.ndarray]:
    return [preprocess(im, spec)]


def plain_background(im: Image.Image) -> RGB | None:
    """The colour of the plain background the picture's subject sits on (a cut-out flattened onto white,
    a product photo): nearly all of the border (PLAIN_SHARE of a thin ring) is one colour and some of the
    picture is not. None for a busy border, or a picture that is all background."""
    ring = max(1, round(PLAIN_RING * min(im.size)))
    w, h = im.size
    sides = [(0, 0, w, ring), (0, h - ring, w, h), (0, ring, ring, h - ring), (w - ring, ring, w, h - ring)]
    pixels = []
    for box in sides:
        if box[2] > box[0] and box[3] > box[1]:
            strip = np.asarray(im.crop(box))
            step_y, step_x = (max(1, n // PLAIN_SAMPLES) for n in strip.shape[:2])
            pixels.append(strip[::step_y, ::step_x].reshape(-1, 3))
    border = np.concatenate(pixels).astype(np.int16)
    median = np.median(border, axis=0)
    near = (np.abs(border - median) <= PLAIN_TOLERANCE).all(axis=1)
    if near.mean() < PLAIN_SHARE:
        return None
    grid = np.asarray(im.resize((PLAIN_GRID, PLAIN_GRID), Image.NEAREST)).reshape(-1, 3).astype(np.int16)
    if (np.abs(grid - median) > PLAIN_TOLERANCE).any(axis=1).mean() < PLAIN_SUBJECT:
        return None
    r, g, b = (int(v) for v in np.round(median))
    return r, g, b


def tagger_view(im: Image.Image, spec: EncoderSpec) -> tuple[np.ndarray, RGB | None]:
    """The classifier's one view of a picture in the tagger, and the plain background its subject sits on
    (None: none): a wide (or tall) picture on a plain background whole, padded to a square with that
    background, else the centre square (close to square, the crop cuts little)."""
    background = plain_background(im)
    if background is None or max(im.size) < DEFAULT_MIN_ASPECT * min(im.size):
        return preprocess(im, spec), background
    return letterbox(im, spec, background), background


VIEW_SETS: dict[str, Callable[[Image.Image, EncoderSpec], list[np.ndarray]]] = {
    "center": _center,
    "center+full": lambda im, spec: [preprocess(im, spec), letterbox(im, spec)],
    "thirds": thirds,
    "thirds+full": lambda im, spec: [*thirds(im, spec), letterbox(im, spec)],
    TAGGER_VIEWS: lambda im, spec: [tagger_view(im, spec)[0]],
}
MERGE_RULES = ("mean", "max")


def views(
    im: Image.Image, spec: EncoderSpec, view_set: str = "center+full", min_aspect: float = DEFAULT_MIN_ASPECT
) -> np.ndarray:
    """(V, 3, S, S) float32 views of one RGB picture; V = 1 when it is close to square."""
    if view_set not in VIEW_SETS:
        raise AutotagError(f"unknown view set {view_set!r}; valid: {', '.join(VIEW_SETS)}")
    if max(im.size) < min_aspect * min(im.size):
        return preprocess(im, spec)[None]
    return np.stack(VIEW_SETS[view_set](im, spec))


def merge_views(probs: np.ndarray, rule: str = "mean") -> np.ndarray:
    """(V, C) class probabilities of one picture's views -> (C,) one vector that still sums to 1."""
    probs = np.atleast_2d(np.asarray(probs, np.float64))
    if rule == "mean":
        return probs.mean(axis=0)
    if rule == "max":
        # a class seen clearly in one view counts fully; renormalised so label sums stay probabilities
        merged = probs.max(axis=0)
        return merged / merged.sum()
    raise AutotagError(f"unknown merge rule {rule!r}; valid: {', '.join(MERGE_RULES)}")
