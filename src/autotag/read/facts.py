"""Picture facts users filter by: orientation, aspect, resolution class, dark or bright.

Orientation, aspect and resolution come from the file's full width and height (not the downscaled
image the pipeline decodes); lightness comes from the decoded image. All are exact rules, no model.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import gcd
from typing import Any

import numpy as np
from PIL import Image

from autotag.read.colors import ColorSample

ORIENTATIONS = ("landscape", "portrait", "square")
SHAPES = ("landscape", "portrait", "square", "ultrawide", "panorama")
RESOLUTIONS = ("small", "HD", "Full HD", "4K", "5K+")
TONES = ("dark", "normal", "bright")

SQUARE_MAX_RATIO = 1.02  # 1000 x 1015 is still square: a few pixels lost to a crop do not matter
ULTRAWIDE_MIN_RATIO = 2.0  # 21:9 monitors are 2.33-2.39; 16:9 is 1.78, 16:10 is 1.6
PANORAMA_MIN_RATIO = 3.0  # 32:9 monitors (3.56) and stitched panoramas, either orientation
# (long side, short side) a picture must reach for each class, so a portrait phone wallpaper of
# 1080 x 2400 is Full HD like 1920 x 1080 is, and a 3440 x 1440 ultrawide is not 4K.
RESOLUTION_MINIMUMS = (("5K+", 5120, 2880), ("4K", 3840, 2160), ("Full HD", 1920, 1080), ("HD", 1280, 720))
COMMON_RATIOS = {
    "1:1": 1.0, "5:4": 1.25, "4:3": 4 / 3, "3:2": 1.5, "16:10": 1.6, "16:9": 16 / 9, "2:1": 2.0,
    "21:9": 64 / 27, "32:9": 32 / 9,
}  # fmt: skip
RATIO_TOLERANCE = 0.015  # relative: 1366 x 768 (1.779) is 16:9, 2560 x 1080 (2.370) is 21:9
# Mean OKLab lightness of the picture; mid grey is ~0.6. Night scenes and dark wallpapers sit well
# under 0.35, snow, paper and pastel wallpapers over 0.8.
DARK_MAX_LIGHTNESS = 0.35
BRIGHT_MIN_LIGHTNESS = 0.8


@dataclass(frozen=True)
class Properties:
    width: int
    height: int
    orientation: str  # landscape | portrait | square
    shape: str  # landscape | portrait | square | ultrawide | panorama
    aspect_ratio: str  # "16:9", "9:16", "4:3", ... or "W:H" reduced when no common ratio is near
    resolution: str  # small | HD | Full HD | 4K | 5K+
    megapixels: float
    lightness: float | None = None  # mean perceptual lightness 0-1, None without the decoded image
    tone: str | None = None  # dark | normal | bright

    def to_dict(self) -> dict[str, Any]:
        out = {
            "width": self.width,
            "height": self.height,
            "orientation": self.orientation,
            "shape": self.shape,
            "aspect_ratio": self.aspect_ratio,
            "resolution": self.resolution,
            "megapixels": round(self.megapixels, 2),
        }
        if self.lightness is not None:
            out["lightness"] = round(self.lightness, 3)
            out["tone"] = self.tone
        return out


def picture_properties(
    width: int, height: int, image: Image.Image | None = None, sample: ColorSample | None = None
) -> Properties:
    """Facts of a picture `width` x `height` pixels (the file's size); `image`, the decoded (maybe
    downscaled) picture, adds its lightness and puts width and height upright when the file's EXIF
    orientation turned it a quarter. `sample`: the image's ColorSample, when already made."""
    if width <= 0 or height <= 0:
        raise ValueError(f"picture size must be positive, got {width} x {height}")
    if image is not None and _turned(width, height, image.width, image.height):
        width, height = height, width
    long, short = max(width, height), min(width, height)
    ratio = long / short
    if ratio <= SQUARE_MAX_RATIO:
        orientation = "square"
    else:
        orientation = "landscape" if width > height else "portrait"
    if ratio >= PANORAMA_MIN_RATIO:
        shape = "panorama"
    elif ratio >= ULTRAWIDE_MIN_RATIO and orientation == "landscape":
        shape = "ultrawide"
    else:
        shape = orientation
    resolution = next((name for name, lo, sh in RESOLUTION_MINIMUMS if long >= lo and short >= sh), "small")
    lightness = tone = None
    if image is not None:
        lightness = mean_lightness(sample if sample is not None else image)
        tone = "dark" if lightness < DARK_MAX_LIGHTNESS else "bright" if lightness > BRIGHT_MIN_LIGHTNESS else "normal"
    return Properties(
        width, height, orientation, shape, aspect_ratio(width, height), resolution, width * height / 1e6,
        lightness, tone,
    )  # fmt: skip


def aspect_ratio(width: int, height: int) -> str:
    """The nearest common ratio within 1.5% ("16:9", "9:16" upright), else the reduced "W:H"."""
    ratio = max(width, height) / min(width, height)
    name, value = min(COMMON_RATIOS.items(), key=lambda kv: abs(kv[1] - ratio))
    if abs(value - ratio) / ratio <= RATIO_TOLERANCE:
        a, b = name.split(":")
        return name if width >= height else f"{b}:{a}"
    d = gcd(width, height)
    return f"{width // d}:{height // d}"


def mean_lightness(image: Image.Image | ColorSample) -> float:
    """Mean OKLab lightness (0 black, 1 white) of a small thumbnail of the picture (its ColorSample)."""
    return float(ColorSample.of(image).lightness.mean())


def _turned(width: int, height: int, image_width: int, image_height: int) -> bool:
    """The decoded image is the file's picture turned a quarter (EXIF orientation 5-8)."""
    if width == height or image_width == image_height:
        return False
    return (width > height) != (image_width > image_height) and np.isclose(
        width / height, image_height / image_width, rtol=0.05
    )
