"""Alembic environment of the control schema (see pipeline_components/migrations)."""

from pipeline_components.migrations import run_env

run_env()
