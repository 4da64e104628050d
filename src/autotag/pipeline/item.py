"""The record one image becomes on its way through the pipeline, and what every output is made from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from autotag.types import Detection, Tag, object_counts

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from autotag.read import Color, Properties

# Facets kept apart from `tags` (what is in the picture): the detector's objects (boxes, counts), the
# dominant colours, photo-or-art style and picture facts. Each appears in `to_dict` once something filled it.
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
    # with `image`: a centre patch (<= 256 px square, HxWx3 uint8) at the resolution the picture was
    # decoded at, before the downscale: sensor noise and flat fills the downscale would average away
    patch: np.ndarray | None = None
    array: np.ndarray | None = None  # the encoder's preprocessed input; dropped once encoded
    # the plain background the subject sits on (a cut-out on white: no place word on it; a wide one reached
    # the encoder whole, padded with it, encoders/views.tagger_view); None: none, or outputs from the cache
    background: tuple[int, int, int] | None = None
    detector_input: np.ndarray | None = None  # the detector's letter-boxed input; dropped once detected
    placement: Any = None  # how the picture sits in detector_input, to map boxes back to its pixels
    detections: list[Detection] | None = None  # everything the detector found (before the decisions)
    logits: np.ndarray | None = None
    embedding: np.ndarray | None = None
    tags: list[Tag] = field(default_factory=list)
    error: str | None = None
    skipped: bool = False  # the caller already has this content (see Tagger.stream's `skip`)
    from_cache: bool = False  # encoder outputs read from the output cache
    # facets: the dataclasses below, or their to_dict() shapes when read back from a batch job's shards
    objects: list[Detection] | None = None  # the detections the decisions kept, named in the vocabulary
    colors: list[Color] | None = None
    style: Any = None  # autotag.read.Style: photo, or art and its style
    properties: Properties | None = None

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
        if self.objects is not None:
            out["object_counts"] = object_counts(o.get("name") or o["label"] for o in out["objects"])
        return out

    def facets(self) -> dict[str, Any]:
        """The facets as plain data (what the store and the Parquet shards keep): objects, colors, style, properties."""
        out = self.to_dict()
        return {name: out.get(name) for name in FACETS}


def _plain(value: Any) -> Any:
    return value.to_dict() if hasattr(value, "to_dict") else value
