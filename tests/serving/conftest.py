"""Shared fixtures: two real registered models (once per session) and per-test configs."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline_components.config import Config, load_config
from pipeline_components.serving.testing import (
    TEST_CLIENT_KEY,
    TEST_DATA,
    TEST_TOKEN,
    make_test_config,
    register_test_models,
    sample_rows,
)

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ["ABX_CLIENT_KEY"] = TEST_CLIENT_KEY  # RouterClient sends it with /feedback
TOKEN = TEST_TOKEN
DATA = TEST_DATA


@pytest.fixture(scope="session")
def registry_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow store with abx-model v1 (champion) and v2 (challenger)."""
    state = tmp_path_factory.mktemp("registry")
    register_test_models(load_config(None, {**DATA, "experiment.state_dir": str(state)}))
    return state


@pytest.fixture
def make_cfg(registry_dir: Path, tmp_path: Path) -> Callable[..., Config]:
    """Build a config whose state (router files, prediction store) lives in tmp_path."""

    def _make(overrides: dict[str, Any] | None = None) -> Config:
        return make_test_config(registry_dir, tmp_path / "state", overrides)

    return _make


@pytest.fixture(scope="session")
def rows() -> list[dict[str, Any]]:
    return sample_rows(load_config(None, DATA), 200)


@pytest.fixture
def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database of this test's own (the server is shared), dropped after."""
    import uuid

    from sqlalchemy import create_engine, text

    name = f"abx_t_{uuid.uuid4().hex}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
