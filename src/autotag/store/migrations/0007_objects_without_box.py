"""Objects the classifier alone named: the objects facet may hold an object without a box (the
classifier knows what is in the picture, not where), so the box columns may be empty, and each object
says where it came from (detector | classifier). Existing rows are detector boxes and keep them."""

from __future__ import annotations


def upgrade(conn) -> None:
    import sqlalchemy as sa

    # Neither SQLite nor a portable ALTER can drop NOT NULL: rebuild the table under its own name.
    conn.execute(sa.text("DROP INDEX ix_image_objects_name_image"))
    conn.execute(sa.text("ALTER TABLE image_objects RENAME TO image_objects_boxed"))
    md = sa.MetaData()
    sa.Table("images", md, sa.Column("id", sa.Integer, primary_key=True))  # for the foreign keys only
    objects = sa.Table(
        "image_objects",
        md,
        sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),  # the consumer word ("table")
        sa.Column("label", sa.String(200), nullable=False),  # the COCO class ("dining table")
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("source", sa.String(16), nullable=False, server_default="detector"),  # detector | classifier
        sa.Column("x0", sa.Float),  # the box: all four empty when the classifier alone named it
        sa.Column("y0", sa.Float),
        sa.Column("x1", sa.Float),
        sa.Column("y1", sa.Float),
        sa.Index("ix_image_objects_name_image", "name", "image_id"),
    )
    objects.create(conn)
    columns = "image_id, position, name, label, score, x0, y0, x1, y1"
    conn.execute(sa.text(f"INSERT INTO image_objects ({columns}) SELECT {columns} FROM image_objects_boxed"))
    conn.execute(sa.text("DROP TABLE image_objects_boxed"))
