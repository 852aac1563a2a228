"""feedback.feedback_key, unique: a retried or re-imported outcome is stored once (7b9865e).

Rows stored before have NULL keys, which never collide.

Revision ID: s0004
Revises: s0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "s0004"
down_revision = "s0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("feedback", sa.Column("feedback_key", sa.String(200), nullable=True))
    op.create_index("ux_feedback_key", "feedback", ["feedback_key"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_feedback_key", table_name="feedback")
    with op.batch_alter_table("feedback") as batch:
        batch.drop_column("feedback_key")
