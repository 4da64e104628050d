"""Any image source (path, URL, bytes, PIL image) -> its content hash, upright RGB pixels and facts."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from PIL import Image

from autotag.ingest.decode import DEFAULT_MAX_PIXELS, decode_with_info, load_source
from autotag.ingest.hashing import content_hash

Source = str | Path | bytes | Image.Image


def source_name(source: Source) -> str:
    """How a source is named in reports: paths and URLs as given, placeholders for in-memory data."""
    if isinstance(source, (str, Path)):
        return str(source)
    return "<bytes>" if isinstance(source, bytes) else "<image>"


def stored_location(name: str) -> str:
    """Where a library records a source: local paths made absolute (so any working folder finds the
    file again), URLs and placeholders unchanged."""
    if "://" in name or name.startswith("<"):
        return name
    path = Path(name).expanduser()
    return str(path if path.is_absolute() else path.absolute())


def source_bytes(source: str | Path | bytes) -> bytes:
    return source if isinstance(source, bytes) else load_source(str(source))


def pixels_hash(im: Image.Image) -> str:
    """Identity of an in-memory image (no file bytes to hash): SHA-256 of its pixels and size."""
    return hashlib.sha256(im.tobytes() + repr(im.size).encode()).hexdigest()


def read_image(
    source: Source, *, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int | None = None
) -> tuple[str, Image.Image, dict[str, Any]]:
    """Any source -> (content hash, upright RGB image, metadata). Raises ImageError.

    min_side: JPEGs may be decoded at a reduced scale that keeps the shorter side at least this long.
    """
    if isinstance(source, Image.Image):
        im = source.convert("RGB")
        return pixels_hash(im), im, {"format": "PIL", "width": im.width, "height": im.height, "size_bytes": 0}
    data = source_bytes(source)
    im, meta = decode_with_info(data, min_side=min_side, max_pixels=max_pixels)
    return content_hash(data), im, meta
