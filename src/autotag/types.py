"""Plain dataclasses shared by every layer. Nothing heavy is imported here."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal


class AutotagError(Exception):
    """An error a user can cause and fix; its message is one line saying what and what to do."""


@dataclass(frozen=True)
class Tag:
    name: str
    score: float
    id: str = ""  # WordNet synset id ("n02123045") or the label itself for trained models
    # label / category / object: the consumer vocabulary's label, category, detected object; style: art's style;
    # learned: a tag the library's owner taught by example (id "learned:NAME")
    kind: Literal["leaf", "ancestor", "label", "hashtag", "category", "object", "style", "learned"] = "leaf"
    detail: str = ""  # a breed or species the model is sure of ("golden retriever" on "dog")

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "id": self.id, "score": round(float(self.score), 6), "kind": self.kind}
        if self.detail:
            out["detail"] = self.detail
        return out


@dataclass(frozen=True)
class Detection:
    """One object found in a picture: a COCO class name, its score, its box in the picture's pixels
    (None for an object the classifier alone named: it knows what, not where)."""

    label: str
    score: float
    box: tuple[float, float, float, float] | None  # (x0, y0, x1, y1), x to the right, y down
    name: str = ""  # the consumer vocabulary's word for the class ("dining table" -> "table"), once decided
    source: str = "detector"  # or "classifier" (no box)

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name} if self.name else {}
        box = None if self.box is None else [round(float(v), 1) for v in self.box]
        out.update(label=self.label, score=round(float(self.score), 6), box=box)
        if self.source != "detector":
            out["source"] = self.source
        return out


def object_counts(names: Iterable[str]) -> dict[str, int]:
    """How many of each object, most first: ["person", "cup", "person"] -> {"person": 2, "cup": 1}."""
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


@dataclass
class ImageRecord:
    """One item of a dataset: where the image is, its true labels, the tags its uploader typed."""

    source: str
    labels: list[str] = field(default_factory=list)
    user_tags: list[str] = field(default_factory=list)
    split: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
