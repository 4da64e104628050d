"""Statements built once with bound parameters: building a union per call cost more than running it."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from autotag.store import schema as t


def upsert(dialect: str, table: sa.Table) -> Any:
    """An INSERT that can take ON CONFLICT DO NOTHING on this database."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


class TagQueries:
    """Listing and counting images, all or by tag.

    An image has a tag when it was predicted (by name or id) or its uploader typed it (and the server
    did not flag it as not fitting), and no person rejected it; or a person added or accepted it.
    """

    def __init__(self) -> None:
        tag = sa.bindparam("tag")
        f, p = t.feedback, t.predictions
        # Ids gathered from the (tag, image_id) indexes first, then matched to images: a correlated
        # EXISTS per image would scan the whole library for a rare tag.
        rejected = sa.select(f.c.image_id).where(f.c.tag == tag, f.c.action == "rejected")
        predicted = sa.select(p.c.image_id).where(
            sa.or_(p.c.tag == tag, p.c.tag_id == tag), p.c.image_id.not_in(rejected)
        )
        typed = sa.select(t.user_tags.c.image_id).where(
            t.user_tags.c.tag == tag, sa.not_(t.user_tags.c.flagged), t.user_tags.c.image_id.not_in(rejected)
        )
        added = sa.select(f.c.image_id).where(f.c.tag == tag, f.c.action.in_(("added", "accepted")))
        matching = sa.union(predicted, typed, added).subquery()
        has_tag = t.images.c.id.in_(sa.select(matching.c[0]))
        newest = sa.select(t.images).order_by(t.images.c.id.desc())
        self.list_all = newest.limit(sa.bindparam("limit")).offset(sa.bindparam("offset"))
        self.list_by_tag = newest.where(has_tag).limit(sa.bindparam("limit")).offset(sa.bindparam("offset"))
        self.count_all = sa.select(sa.func.count()).select_from(t.images)
        self.count_by_tag = self.count_all.where(has_tag)
        self.has_tag = has_tag
        # facet filters, each answered from its (value, image_id) index
        color, style, obj = sa.bindparam("color"), sa.bindparam("style"), sa.bindparam("object")
        fc, fo, ff = t.image_colors, t.image_objects, t.image_facets
        self.has_color = t.images.c.id.in_(sa.select(fc.c.image_id).where(fc.c.name == color))
        self.has_object = t.images.c.id.in_(
            sa.select(fo.c.image_id).where(sa.or_(fo.c.name == obj, fo.c.label == obj))
        )
        self.has_style = t.images.c.id.in_(  # "art" or "photo" (the kind) or an art style ("abstract")
            sa.select(ff.c.image_id).where(sa.or_(ff.c.style == style, ff.c.kind == style))
        )
        self._newest = newest

    def filtered(self, filters: dict[str, str | None]) -> tuple[Any, Any, dict[str, str]]:
        """(list statement, count statement, parameters) for images matching every given filter of
        tag, color, style and object (None or empty = not filtered)."""
        given = {k: v for k, v in filters.items() if v}
        unknown = set(given) - set(FILTERS)
        if unknown:
            raise ValueError(f"unknown filters {sorted(unknown)}")
        if set(given) <= {"tag"}:
            if given:
                return self.list_by_tag, self.count_by_tag, given
            return self.list_all, self.count_all, given
        conditions = [getattr(self, f"has_{name}") for name in FILTERS if name in given]
        page = self._newest.where(*conditions).limit(sa.bindparam("limit")).offset(sa.bindparam("offset"))
        return page, self.count_all.where(*conditions), given


FILTERS = ("tag", "color", "style", "object")  # what the library can be searched by


TAG_QUERIES = TagQueries()
