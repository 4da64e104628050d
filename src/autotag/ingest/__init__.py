"""Finding image files and decoding them safely. No ML imports here."""

from autotag.ingest.decode import (
    DEFAULT_MAX_PIXELS,
    DecodeBudget,
    ImageError,
    decode_image,
    decode_with_info,
    load_source,
)
from autotag.ingest.discover import IMAGE_EXTENSIONS, discover
from autotag.ingest.hashing import content_hash
from autotag.ingest.read import Source, read_image, source_bytes, source_name, stored_location

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DecodeBudget",
    "IMAGE_EXTENSIONS",
    "ImageError",
    "Source",
    "content_hash",
    "decode_image",
    "decode_with_info",
    "discover",
    "load_source",
    "read_image",
    "source_bytes",
    "source_name",
    "stored_location",
]
