"""Facets kept apart from tags: an image's objects (boxes), dominant colours, photo-or-art style and
picture facts, each searchable ("blue", "photo", "person") without touching the tag tables."""

from __future__ import annotations


def upgrade(conn) -> None:
    import sqlalchemy as sa

    md = sa.MetaData()
    sa.Table("images", md, sa.Column("id", sa.Integer, primary_key=True))  # for the foreign keys only
    sa.Table(
        "image_facets",
        md,
        sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("model", sa.String(200)),  # the model whose detector and style head filled them
        sa.Column("kind", sa.String(16)),  # photo | art
        sa.Column("style", sa.String(32)),  # photo | abstract | illustration | 3d render | pattern
        sa.Column("style_score", sa.Float),
        sa.Column("width", sa.Integer),  # upright (after the file's EXIF orientation)
        sa.Column("height", sa.Integer),
        sa.Column("orientation", sa.String(16)),
        sa.Column("shape", sa.String(16)),
        sa.Column("aspect_ratio", sa.String(16)),
        sa.Column("resolution", sa.String(16)),
        sa.Column("megapixels", sa.Float),
        sa.Column("lightness", sa.Float),
        sa.Column("tone", sa.String(16)),
        sa.Index("ix_image_facets_style_image", "style", "image_id"),
        sa.Index("ix_image_facets_kind_image", "kind", "image_id"),
    )
    sa.Table(
        "image_colors",
        md,
        sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("share", sa.Float, nullable=False),
        sa.Column("hex", sa.String(7), nullable=False),
        sa.Index("ix_image_colors_name_image", "name", "image_id"),
    )
    sa.Table(
        "image_objects",
        md,
        sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),  # the consumer word ("table")
        sa.Column("label", sa.String(200), nullable=False),  # the detector's class ("dining table")
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("x0", sa.Float, nullable=False),
        sa.Column("y0", sa.Float, nullable=False),
        sa.Column("x1", sa.Float, nullable=False),
        sa.Column("y1", sa.Float, nullable=False),
        sa.Index("ix_image_objects_name_image", "name", "image_id"),
    )
    for name in ("image_facets", "image_colors", "image_objects"):
        md.tables[name].create(conn)
