"""User-typed tags the server judged not to fit the picture are kept (the uploader typed them) but
flagged, so searching by tag does not find a mountain under the "dog" its uploader typed."""

from __future__ import annotations


def upgrade(conn) -> None:
    from sqlalchemy import text

    conn.execute(text("ALTER TABLE user_tags ADD COLUMN flagged BOOLEAN NOT NULL DEFAULT FALSE"))
