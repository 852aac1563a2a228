"""The endpoint control state as it first shipped (8d13cc8): endpoints, variants, events,
replicas.

Revision ID: c0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c0001"
down_revision: str | None = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "abx_endpoints",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("salt", sa.String(128), nullable=False),
        sa.Column("base_salt", sa.String(128), nullable=False),
        sa.Column("shadow", sa.Boolean, nullable=False),
        sa.Column("experiment_id", sa.String(128), nullable=True),
        sa.Column("collecting", sa.Boolean, nullable=False),
        sa.Column("breaker_tripped", sa.Boolean, nullable=False),
        sa.Column("breaker_reason", sa.String(1000), nullable=True),
        sa.Column("breaker_at", sa.Float, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "abx_endpoint_variants",
        sa.Column("endpoint", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("uri", sa.String(500), nullable=False),
        sa.Column("pinned_uri", sa.String(500), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("weight", sa.Float, nullable=False),
        sa.Column("added_by", sa.String(128), nullable=False),
        sa.Column("added_at", sa.Float, nullable=False),
    )
    op.create_table(
        "abx_endpoint_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("detail", sa.JSON, nullable=True),
    )
    op.create_index("ix_abx_endpoint_events_endpoint", "abx_endpoint_events", ["endpoint"])
    op.create_table(
        "abx_endpoint_replicas",
        sa.Column("endpoint", sa.String(64), primary_key=True),
        sa.Column("replica_id", sa.String(64), primary_key=True),
        sa.Column("url", sa.String(300), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("heartbeat_at", sa.Float, nullable=False),
        sa.Column("applied_version", sa.Integer, nullable=False),
        sa.Column("applied_at", sa.Float, nullable=False),
        sa.Column("ready", sa.JSON, nullable=True),
        sa.Column("pending_rows", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    for table in ("abx_endpoint_replicas", "abx_endpoint_events", "abx_endpoint_variants",
                  "abx_endpoints"):
        op.drop_table(table)
