"""Fixtures: two real registered models (once per session), configs with state in tmp_path, and
a fresh PostgreSQL database per test that needs one."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline_components.config import Config, load_config
from pipeline_components.serving.testing import (
    TEST_CLIENT_KEY,
    TEST_DATA,
    make_test_config,
    register_test_models,
    sample_rows,
)

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("OMP_NUM_THREADS", "1")
CLIENT_KEY = TEST_CLIENT_KEY
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(scope="session")
def registry_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow store with abx-model v1 (champion) and v2 (challenger)."""
    state = tmp_path_factory.mktemp("registry")
    register_test_models(load_config(None, {**TEST_DATA, "experiment.state_dir": str(state)}))
    return state


@pytest.fixture
def make_cfg(registry_dir: Path, tmp_path: Path) -> Callable[..., Config]:
    """An endpoint config: free ports, fast control loop, secrets known to the test."""

    def _make(overrides: dict[str, Any] | None = None) -> Config:
        base = {"endpoint.port": 0, "endpoint.client_key": CLIENT_KEY,
                "endpoint.load_timeout_s": 90, "endpoint.drain_s": 0.5,
                "serving.guardrails.min_requests": 20}
        return make_test_config(registry_dir, tmp_path / "state", {**base, **(overrides or {})})

    return _make


@pytest.fixture(scope="session")
def rows() -> list[dict[str, Any]]:
    return sample_rows(load_config(None, TEST_DATA), 200)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, uniquely named PostgreSQL database, dropped afterwards."""
    from sqlalchemy import create_engine, text

    name = f"abx_t_{uuid.uuid4().hex}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        from pipeline_components.serving import operations

        operations._STORES.clear()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
