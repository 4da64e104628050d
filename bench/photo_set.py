"""Distinct real-looking JPEG photos for the throughput benchmarks: seeded crops, flips and scales of
the bundled photos (autotag.demo), so every run of a benchmark sees the same images."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from PIL import Image

from autotag.demo import PHOTO_NAMES, bundled_photo


def photo_variants(n: int, size: tuple[int, int], min_crop: float) -> Iterator[Image.Image]:
    """n images of `size`: a random crop of min_crop..1 of each side of a bundled photo (in turn),
    resized, every second one mirrored."""
    rng = np.random.default_rng(0)
    sources = [bundled_photo(name) for name in PHOTO_NAMES]
    for i in range(n):
        im = sources[i % len(sources)]
        w, h = im.size
        cw, ch = int(w * rng.uniform(min_crop, 1.0)), int(h * rng.uniform(min_crop, 1.0))
        x, y = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
        im = im.crop((x, y, x + cw, y + ch)).resize(size, Image.BICUBIC)
        yield im.transpose(Image.FLIP_LEFT_RIGHT) if i % 2 else im
