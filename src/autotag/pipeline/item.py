"""The record one image becomes on its way through the pipeline, and what every output is made from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from autotag.types import Tag

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

# Facets a later signal may fill (the detector's objects, colours, photo-or-art style, picture facts).
# They are kept apart from `tags` and appear in `to_dict` only once something filled them.
FACETS = ("objects", "colors", "style", "properties")


@dataclass(eq=False)
class Item:
    """One source after decode -> encode -> decide; a source that failed carries `error` instead."""

    source: str  # the path or URL as given, "<bytes>" or "<image>"
    content_hash: str = ""
    meta: dict[str, Any] = field(default_factory=dict)  # format, width, height, size_bytes
    phash: int | None = None  # 64-bit perceptual hash, when asked for
    fingerprint: Any = None  # autotag.index.duplicates.Fingerprint (pHash, detail, brightness), with phash
    image: Image.Image | None = None  # the decoded picture, long side <= KEPT_SIDE, while signals need it
    array: np.ndarray | None = None  # the encoder's preprocessed input; dropped once encoded
    logits: np.ndarray | None = None
    embedding: np.ndarray | None = None
    tags: list[Tag] = field(default_factory=list)
    error: str | None = None
    skipped: bool = False  # the caller already has this content (see Tagger.stream's `skip`)
    from_cache: bool = False  # encoder outputs read from the output cache
    objects: Any = None
    colors: Any = None
    style: Any = None
    properties: Any = None

    @property
    def path(self) -> str:
        return self.source

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": self.source,
            "content_hash": self.content_hash,
            "tags": [t.to_dict() for t in self.tags],
            "error": self.error,
        }
        out.update(self.meta)
        for name in FACETS:
            value = getattr(self, name)
            if value is not None:
                out[name] = [_plain(v) for v in value] if isinstance(value, list) else _plain(value)
        return out


def _plain(value: Any) -> Any:
    return value.to_dict() if hasattr(value, "to_dict") else value
