"""Dominant colours of a decoded picture, named from the project's fixed palette (WORDS.md).

Every pixel of a small thumbnail is named by rules in OKLCh (the polar form of OKLab, a perceptual
colour space: equal steps look about equally different, and hue does not drift with lightness as it
does in HSV). Counting names gives each colour's share of the picture; the mean of a name's pixels is
its hex value. Naming pixels directly, rather than clustering first, keeps the result deterministic
and takes about a millisecond.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

PALETTE = (
    "red", "orange", "yellow", "green", "teal", "blue", "purple", "pink", "brown", "beige",
    "white", "grey", "black",
)  # fmt: skip
MONOCHROME = "black and white"
COLOR_NAMES = (*PALETTE, MONOCHROME)

THUMBNAIL_SIDE = 64  # 4096 pixels: shares are stable to ~1% and naming costs well under a millisecond

# Below this OKLab chroma a pixel reads as a neutral (white, grey, black); pale sky blue is ~0.05.
NEUTRAL_CHROMA = 0.035
# Below this lightness every pixel is black, whatever its chroma (sRGB grey 30 is ~0.2).
BLACK_ANY_CHROMA_L = 0.18
BLACK_L = 0.30  # neutral pixels: sRGB grey 60 is ~0.37, 40 is ~0.29
WHITE_L = 0.90  # sRGB grey 222 is ~0.90
# A picture with hardly any tinted pixel whose tones vary is a black-and-white picture (a greyscale
# photo, a scan, a line drawing), not a flat grey one. The tint bar is far under NEUTRAL_CHROMA: a
# white object photographed on white has slight tints (0.01-0.03) and is "white", not black and white.
MONOCHROME_TINT_CHROMA = 0.015
MONOCHROME_MAX_TINTED = 0.02
MONOCHROME_MIN_LIGHTNESS_STD = 0.03  # flat grey with sensor noise is ~0.01, a greyscale photo 0.04+
# People name the colours of a picture before its shadows and neutral backgrounds: grey and black
# count half when ordering the colours (their shares stay as measured).
NEUTRAL_SALIENCE = 0.5

_M1 = np.array(
    [[0.4122214708, 0.5363325363, 0.0514459929],
     [0.2119034982, 0.6806995451, 0.1073969566],
     [0.0883024619, 0.2817188376, 0.6299787005]], dtype=np.float32,
)  # fmt: skip
_M2 = np.array(
    [[0.2104542553, 0.7936177850, -0.0040720468],
     [1.9779984951, -2.4285922050, 0.4505937099],
     [0.0259040371, 0.7827717662, -0.8086757660]], dtype=np.float32,
)  # fmt: skip
# sRGB byte -> linear light, as a lookup table (the transfer curve costs more than the rest together)
_LINEAR = np.array(
    [v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4 for v in np.arange(256) / 255.0],
    dtype=np.float32,
)


@dataclass(frozen=True)
class Color:
    name: str  # a palette name, or "black and white"
    share: float  # fraction of the picture's pixels (0-1)
    hex: str  # mean sRGB of those pixels, "#rrggbb"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "share": round(float(self.share), 4), "hex": self.hex}


def oklch(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(..., 3) uint8 sRGB -> OKLCh lightness (0-1), chroma (0-~0.32), hue in degrees (0-360)."""
    lms = np.cbrt(_LINEAR[rgb] @ _M1.T)
    lab = lms @ _M2.T
    lightness, a, b = lab[..., 0], lab[..., 1], lab[..., 2]
    return lightness, np.hypot(a, b), np.degrees(np.arctan2(b, a)) % 360.0


def name_pixels(rgb: np.ndarray, lch: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """(..., 3) uint8 sRGB -> (...) int indexes into PALETTE. `lch`: oklch(rgb), when already known."""
    lum, chroma, hue = lch if lch is not None else oklch(rgb)
    idx = {name: i for i, name in enumerate(PALETTE)}
    out = np.full(lum.shape, idx["grey"], dtype=np.int8)

    neutral = (chroma < NEUTRAL_CHROMA) | (lum < BLACK_ANY_CHROMA_L)
    # Hue sectors (OKLCh degrees; CSS red is 29, orange 71, gold 95, green 142, teal 195, blue 264,
    # purple 328, hot pink 352). Within the warm sectors lightness and chroma decide red / pink /
    # orange / brown / beige: brown is a dark or greyish orange, beige a pale greyish orange or yellow.
    reds = (hue >= 345) | (hue < 42)
    oranges = (hue >= 42) & (hue < 80)
    yellows = (hue >= 80) & (hue < 120)
    greens = (hue >= 120) & (hue < 170)
    teals = (hue >= 170) & (hue < 215)
    blues = (hue >= 215) & (hue < 290)
    purples = (hue >= 290) & (hue < 345)
    pale = (lum >= 0.75) & (chroma < 0.09)

    rules = [
        # red family: pinkish reds are light or lean to magenta; dull dark reds are brown
        (reds & ((hue >= 345) | (hue < 15)) & (lum >= 0.6), "pink"),
        (reds & (hue >= 15) & (lum >= 0.8), "pink"),
        (reds & (hue >= 15) & (lum < 0.8) & (chroma < 0.1), "brown"),
        (reds, "red"),
        (oranges & pale, "beige"),
        (oranges & ((lum < 0.65) | (chroma < 0.09)), "brown"),
        (oranges, "orange"),
        (yellows & pale, "beige"),
        (yellows & (lum < 0.6) & (hue < 90), "brown"),
        (yellows & (lum < 0.6), "green"),  # olive, dark foliage: a green
        (yellows, "yellow"),
        (greens, "green"),
        (teals, "teal"),
        (blues, "blue"),
        (purples & ((lum >= 0.8) | ((hue >= 335) & (lum >= 0.6))), "pink"),
        (purples, "purple"),
    ]
    named = np.zeros(lum.shape, dtype=bool)
    for mask, name in rules:
        take = mask & ~named & ~neutral
        out[take] = idx[name]
        named |= take
    out[neutral & (lum < BLACK_L)] = idx["black"]
    out[neutral & (lum >= WHITE_L)] = idx["white"]
    return out


@dataclass(frozen=True)
class ColorSample:
    """A picture's small thumbnail pixels and their OKLCh: what its colours and lightness are read
    from, made once when both are wanted."""

    pixels: np.ndarray  # (N, 3) uint8 sRGB
    lightness: np.ndarray  # (N,) OKLab L, 0-1
    chroma: np.ndarray
    hue: np.ndarray

    @classmethod
    def of(cls, image: Image.Image | ColorSample) -> ColorSample:
        if isinstance(image, ColorSample):
            return image
        pixels = thumbnail_pixels(image)
        return cls(pixels, *oklch(pixels))


def thumbnail_pixels(image: Image.Image, side: int = THUMBNAIL_SIDE) -> np.ndarray:
    """(N, 3) uint8 pixels of a box-filtered thumbnail whose longer side is at most `side`."""
    im = image if image.mode == "RGB" else image.convert("RGB")
    scale = side / max(im.size)
    if scale < 1:
        size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
        im = im.resize(size, Image.BOX, reducing_gap=2.0)
    return np.asarray(im, dtype=np.uint8).reshape(-1, 3)


def dominant_colors(image: Image.Image | ColorSample, *, max_colors: int = 4, min_share: float = 0.05) -> list[Color]:
    """The picture's main colours, each at least `min_share` of the picture, most salient first
    (by share, grey and black counting half: see NEUTRAL_SALIENCE).

    A picture with (almost) no coloured pixels whose tones vary comes back as "black and white"
    first (share 1.0), followed by its neutral tones. `image` may be its ColorSample, already made.
    """
    sample = ColorSample.of(image)
    pixels, lum, chroma, hue = sample.pixels, sample.lightness, sample.chroma, sample.hue
    names = name_pixels(pixels, (lum, chroma, hue))
    shares = np.bincount(names.astype(np.intp), minlength=len(PALETTE)) / max(1, names.size)
    salience = shares * _SALIENCE_WEIGHT
    colors = [
        Color(PALETTE[i], float(shares[i]), _hex(pixels[names == i].mean(axis=0)))
        for i in np.argsort(-salience, kind="stable")
        if shares[i] >= min_share
    ][:max_colors]
    if np.mean(chroma > MONOCHROME_TINT_CHROMA) < MONOCHROME_MAX_TINTED and lum.std() >= MONOCHROME_MIN_LIGHTNESS_STD:
        colors = [Color(MONOCHROME, 1.0, _hex(pixels.mean(axis=0))), *colors][:max_colors]
    return colors


_SALIENCE_WEIGHT = np.array([NEUTRAL_SALIENCE if n in ("grey", "black") else 1.0 for n in PALETTE])


def _hex(rgb: np.ndarray) -> str:
    r, g, b = (int(round(float(v))) for v in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"
