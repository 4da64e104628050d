"""Initial schema: images, predictions, user tags, feedback, models."""

from __future__ import annotations


def upgrade(conn) -> None:
    import sqlalchemy as sa

    md = sa.MetaData()
    sa.Table(
        "images",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("content_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("width", sa.Integer),
        sa.Column("height", sa.Integer),
        sa.Column("format", sa.String(32)),
        sa.Column("size_bytes", sa.BigInteger),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        # Never reuse a deleted image's id: API clients and the vector index refer to images by id.
        sqlite_autoincrement=True,
    )
    sa.Table(
        "predictions",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id", ondelete="CASCADE"), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("tag", sa.String(200), nullable=False),
        sa.Column("tag_id", sa.String(200), nullable=False, server_default=""),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("rank", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False, server_default="leaf"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Index("ix_predictions_image_model", "image_id", "model"),
        sa.Index("ix_predictions_tag", "tag"),
        sa.Index("ix_predictions_tag_id", "tag_id"),
    )
    sa.Table(
        "user_tags",
        md,
        sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("tag", sa.String(200), primary_key=True),
        sa.Column("position", sa.Integer, nullable=False, server_default="0"),
        sa.Index("ix_user_tags_tag", "tag"),
    )
    sa.Table(
        "feedback",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id", ondelete="CASCADE"), nullable=False),
        sa.Column("tag", sa.String(200), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("who", sa.String(200)),
        sa.Column("model", sa.String(200)),
        sa.Column("score", sa.Float),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("action IN ('accepted', 'rejected', 'added')", name="ck_feedback_action"),
        sa.Index("ix_feedback_image", "image_id"),
        sa.Index("ix_feedback_model_tag", "model", "tag"),
        sqlite_autoincrement=True,
    )
    sa.Table(
        "models",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("config", sa.Text, nullable=False, server_default="{}"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.UniqueConstraint("name", "version", name="uq_models_name_version"),
        sqlite_autoincrement=True,
    )
    md.create_all(conn)
