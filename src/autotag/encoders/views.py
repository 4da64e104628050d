"""Several views of one picture, for pictures wider (or taller) than the network's square input.

A 16:9 wallpaper loses 44% of its area to the centre crop. The view sets here look at more of it:
- "center": the centre square only (the classic single view);
- "center+full": the centre square plus the whole picture letter-boxed onto a neutral square;
- "thirds": square crops at the start, middle and end of the long side (they cover all of it);
- "thirds+full": both.
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


def _normalise(im: Image.Image, spec: EncoderSpec) -> np.ndarray:
    arr = (np.asarray(im, dtype=np.float32) - spec.mean) / spec.std
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def letterbox(im: Image.Image, spec: EncoderSpec) -> np.ndarray:
    """The whole picture, long side scaled to the input size, padded with the normalisation mean (0 after it)."""
    size = spec.input_size
    scale = size / max(im.size)
    w, h = max(1, round(im.width * scale)), max(1, round(im.height * scale))
    fill = int(round(spec.mean))
    canvas = Image.new("RGB", (size, size), (fill, fill, fill))
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


VIEW_SETS: dict[str, Callable[[Image.Image, EncoderSpec], list[np.ndarray]]] = {
    "center": _center,
    "center+full": lambda im, spec: [preprocess(im, spec), letterbox(im, spec)],
    "thirds": thirds,
    "thirds+full": lambda im, spec: [*thirds(im, spec), letterbox(im, spec)],
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
