"""What the store hands back: plain frozen records, and the row -> record conversions."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from autotag.store import FEEDBACK_ACTIONS
from autotag.types import AutotagError, Tag, object_counts

ACTION_ALIASES = {
    "accept": "accepted",
    "accepted": "accepted",
    "reject": "rejected",
    "rejected": "rejected",
    "add": "added",
    "added": "added",
}


def normal_action(action: str) -> str:
    """'accept' / 'accepted' -> 'accepted', ...; anything else is an error listing the valid ones."""
    normal = ACTION_ALIASES.get(str(action).strip().lower())
    if normal is None:
        raise AutotagError(f"unknown feedback action {action!r}; valid: {', '.join(FEEDBACK_ACTIONS)}")
    return normal


def now() -> datetime:
    return datetime.now(UTC)


def utc(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything stored is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


@dataclass(frozen=True)
class StoredImage:
    id: int
    content_hash: str
    source: str
    width: int | None
    height: int | None
    format: str | None
    size_bytes: int | None
    added_at: datetime

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["added_at"] = self.added_at.isoformat()
        return out

    @classmethod
    def from_row(cls, row: Any) -> StoredImage:
        return cls(
            id=row.id,
            content_hash=row.content_hash,
            source=row.source,
            width=row.width,
            height=row.height,
            format=row.format,
            size_bytes=row.size_bytes,
            added_at=utc(row.added_at),  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class StoredPrediction:
    image_id: int
    model: str
    tag: str
    tag_id: str
    score: float
    rank: int
    kind: str

    def to_tag(self) -> Tag:
        return Tag(name=self.tag, score=self.score, id=self.tag_id, kind=self.kind)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_row(cls, row: Any) -> StoredPrediction:
        return cls(row.image_id, row.model, row.tag, row.tag_id, float(row.score), row.rank, row.kind)


@dataclass(frozen=True)
class StoredFeedback:
    id: int
    image_id: int
    tag: str
    action: str
    who: str | None
    model: str | None
    score: float | None
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["created_at"] = self.created_at.isoformat()
        return out

    @classmethod
    def from_row(cls, row: Any) -> StoredFeedback:
        return cls(
            id=row.id,
            image_id=row.image_id,
            tag=row.tag,
            action=row.action,
            who=row.who,
            model=row.model,
            score=row.score,
            created_at=utc(row.created_at),  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class StoredModel:
    id: int
    name: str
    version: int
    path: str
    config: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    active: bool = False

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["created_at"] = self.created_at.isoformat() if self.created_at else None
        return out

    @classmethod
    def from_row(cls, row: Any) -> StoredModel:
        return cls(
            id=row.id,
            name=row.name,
            version=row.version,
            path=row.path,
            config=json.loads(row.config or "{}"),
            created_at=utc(row.created_at),
            active=bool(row.active),
        )


PROPERTY_KEYS = ("width", "height", "orientation", "shape", "aspect_ratio", "resolution", "megapixels", "lightness",
                 "tone")  # fmt: skip


@dataclass(frozen=True)
class StoredFacets:
    """An image's facets as stored, in the shapes the pipeline's records use (Item.to_dict)."""

    image_id: int
    model: str | None = None
    objects: list[dict[str, Any]] = field(default_factory=list)  # {name, label, score, box}, best first
    colors: list[dict[str, Any]] = field(default_factory=list)  # {name, share, hex}, in the reader's order
    style: dict[str, Any] | None = None  # {kind, style, score}
    properties: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "objects": self.objects,
            "object_counts": object_counts(o["name"] for o in self.objects),
            "colors": self.colors,
            "style": self.style,
            "properties": self.properties,
        }


def tag_fields(tag: Tag | dict[str, Any]) -> tuple[str, str, float, str]:
    """(name, id, score, kind) of a Tag or of a tag dict (as read back from Parquet shards)."""
    if isinstance(tag, Tag):
        return tag.name, tag.id or "", float(tag.score), tag.kind
    if isinstance(tag, dict) and "name" in tag:
        return (
            str(tag["name"]),
            str(tag.get("id") or ""),
            float(tag.get("score", 1.0)),
            str(tag.get("kind", "leaf")),
        )
    raise AutotagError(f"a prediction must be a Tag or a dict with 'name' and 'score', got {tag!r}")


@dataclass(frozen=True)
class StoredLearnedTag:
    """A tag taught by example: the pictures judged for it and its newest model's version (0: none yet)."""

    name: str
    version: int
    examples: list[int]  # image ids given or accepted as examples, in the order judged
    rejections: list[int]  # image ids rejected
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "examples": len(self.examples),
            "rejections": len(self.rejections),
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
        }
