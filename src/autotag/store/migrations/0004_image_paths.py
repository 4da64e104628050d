"""Every path a library has seen for one content: a byte copy indexed from another folder is the same
image (one row, one vector), but its path is kept, so duplicates can list exact copies first."""

from __future__ import annotations


def upgrade(conn) -> None:
    from sqlalchemy import text

    conn.execute(text(
        "CREATE TABLE image_paths (image_id INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,"
        " path TEXT NOT NULL, PRIMARY KEY (image_id, path))"
    ))  # fmt: skip
    conn.execute(text("INSERT INTO image_paths (image_id, path) SELECT id, source FROM images"))
