"""The current schema as SQLAlchemy Core tables, used for queries only.

Tables are created and changed by the numbered migrations in `migrations/`, never from here;
keep this file in step with the newest migration.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

images = sa.Table(
    "images",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("content_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("width", sa.Integer),
    sa.Column("height", sa.Integer),
    sa.Column("format", sa.String(32)),
    sa.Column("size_bytes", sa.BigInteger),
    sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
)

image_paths = sa.Table(  # every path seen for an image's content (0004); images.source is the first
    "image_paths",
    metadata,
    sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("path", sa.Text, primary_key=True),
)

predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id", ondelete="CASCADE"), nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("tag", sa.String(200), nullable=False),
    sa.Column("tag_id", sa.String(200), nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("rank", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

user_tags = sa.Table(
    "user_tags",
    metadata,
    sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("tag", sa.String(200), primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("flagged", sa.Boolean, nullable=False, server_default=sa.false()),  # judged not to fit (0003)
)

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id", ondelete="CASCADE"), nullable=False),
    sa.Column("tag", sa.String(200), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("who", sa.String(200)),
    sa.Column("model", sa.String(200)),
    sa.Column("score", sa.Float),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

models = sa.Table(
    "models",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("config", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
)

image_facets = sa.Table(
    "image_facets",
    metadata,
    sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("model", sa.String(200)),
    sa.Column("kind", sa.String(16)),
    sa.Column("style", sa.String(32)),
    sa.Column("style_score", sa.Float),
    sa.Column("width", sa.Integer),
    sa.Column("height", sa.Integer),
    sa.Column("orientation", sa.String(16)),
    sa.Column("shape", sa.String(16)),
    sa.Column("aspect_ratio", sa.String(16)),
    sa.Column("resolution", sa.String(16)),
    sa.Column("megapixels", sa.Float),
    sa.Column("lightness", sa.Float),
    sa.Column("tone", sa.String(16)),
)

image_colors = sa.Table(
    "image_colors",
    metadata,
    sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(32), nullable=False),
    sa.Column("share", sa.Float, nullable=False),
    sa.Column("hex", sa.String(7), nullable=False),
)

image_objects = sa.Table(
    "image_objects",
    metadata,
    sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("label", sa.String(200), nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("source", sa.String(16), nullable=False, server_default="detector"),  # detector | classifier
    sa.Column("x0", sa.Float),  # the box; empty for an object the classifier alone named
    sa.Column("y0", sa.Float),
    sa.Column("x1", sa.Float),
    sa.Column("y1", sa.Float),
)

FACET_TABLES = (image_facets, image_colors, image_objects)

learned_tags = sa.Table(
    "learned_tags",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

learned_examples = sa.Table(
    "learned_examples",
    metadata,
    sa.Column("tag_id", sa.Integer, sa.ForeignKey("learned_tags.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("verdict", sa.String(16), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

learned_models = sa.Table(
    "learned_models",
    metadata,
    sa.Column("tag_id", sa.Integer, sa.ForeignKey("learned_tags.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("examples", sa.Integer, nullable=False),
    sa.Column("rejections", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
