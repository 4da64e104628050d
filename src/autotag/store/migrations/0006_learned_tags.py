"""Tags taught by example: each learned tag, the pictures a person gave as examples or rejected, and
every version of its model (a small JSON document, see autotag.heads.learned_tag), newest beside the
older ones. Forgetting a tag removes these rows and its predictions, never an image."""

from __future__ import annotations


def upgrade(conn) -> None:
    import sqlalchemy as sa

    md = sa.MetaData()
    sa.Table("images", md, sa.Column("id", sa.Integer, primary_key=True))  # for the foreign keys only
    sa.Table(
        "learned_tags",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("version", sa.Integer, nullable=False),  # the newest model's version (0: none yet)
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    sa.Table(
        "learned_examples",
        md,
        sa.Column("tag_id", sa.Integer, sa.ForeignKey("learned_tags.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("verdict", sa.String(16), nullable=False),  # example | rejected (the latest judgement)
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Index("ix_learned_examples_image", "image_id"),
    )
    sa.Table(
        "learned_models",
        md,
        sa.Column("tag_id", sa.Integer, sa.ForeignKey("learned_tags.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("examples", sa.Integer, nullable=False),
        sa.Column("rejections", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    for name in ("learned_tags", "learned_examples", "learned_models"):
        md.tables[name].create(conn)
