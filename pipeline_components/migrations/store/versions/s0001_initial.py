"""The prediction log as the first release made it (45507a8): predictions, feedback, events.

Revision ID: s0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "s0001"
down_revision: str | None = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "predictions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("experiment_id", sa.String(128), nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("unit_id", sa.String(128), nullable=False),
        sa.Column("variant", sa.String(64), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("prediction", sa.Float, nullable=True),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("served", sa.Boolean, nullable=False),
        sa.Column("features", sa.JSON, nullable=True),
    )
    op.create_index("ix_predictions_exp_req", "predictions", ["experiment_id", "request_id"])
    op.create_index("ix_predictions_exp_unit", "predictions", ["experiment_id", "unit_id"])
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("experiment_id", sa.String(128), nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("unit_id", sa.String(128), nullable=True),
        sa.Column("outcome", sa.Float, nullable=False),
        sa.Column("reward", sa.Float, nullable=True),
    )
    op.create_index("ix_feedback_exp_req", "feedback", ["experiment_id", "request_id"])
    op.create_index("ix_feedback_exp_unit", "feedback", ["experiment_id", "unit_id"])
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("experiment_id", sa.String(128), nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("detail", sa.JSON, nullable=True),
    )


def downgrade() -> None:
    for table in ("events", "feedback", "predictions"):
        op.drop_table(table)
