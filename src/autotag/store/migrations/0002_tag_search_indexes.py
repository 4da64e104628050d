"""Covering indexes for tag search: (tag, image_id) answers "which images have this tag" from the
index alone, and feedback by (tag, action) finds rejections and additions without a scan."""

from __future__ import annotations


def upgrade(conn) -> None:
    from sqlalchemy import text

    for statement in (
        "CREATE INDEX ix_predictions_tag_image ON predictions (tag, image_id)",
        "CREATE INDEX ix_predictions_tag_id_image ON predictions (tag_id, image_id)",
        "DROP INDEX ix_predictions_tag",
        "DROP INDEX ix_predictions_tag_id",
        "CREATE INDEX ix_feedback_tag_action ON feedback (tag, action, image_id)",
    ):
        conn.execute(text(statement))
