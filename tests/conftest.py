"""Fixtures shared across test folders: two real registered models, sample request rows, a fresh
PostgreSQL database per test, the Docker engine and the endpoint image.

The engine and image are real: ``scripts/dockerd.sh`` starts abx's private engine when it is
down (installing docker.io on a fresh machine) and the image is built with ``abx image build``'s
code path; the layer cache on the engine's stable data root makes every build after the first
take seconds.
A test that needs them fails when they cannot be had; it never skips.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline_components.config import Config, load_config
from pipeline_components.serving.testing import (
    TEST_DATA,
    make_test_config,
    register_test_models,
    sample_rows,
)

REPO = Path(__file__).resolve().parents[1]
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def registry_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow store with abx-model v1 (champion) and v2 (challenger), once per session."""
    state = tmp_path_factory.mktemp("registry")
    register_test_models(load_config(None, {**TEST_DATA, "experiment.state_dir": str(state)}))
    return state


@pytest.fixture
def make_cfg(registry_dir: Path, tmp_path: Path) -> Callable[..., Config]:
    """A serving config on the registered models, its state (router files, prediction store) in
    tmp_path; ``make_cfg({"key.path": value})`` overrides. Folders with configs of their own
    (data, training, experiment) define their own ``make_cfg``."""

    def _make(overrides: dict[str, Any] | None = None) -> Config:
        return make_test_config(registry_dir, tmp_path / "state", overrides)

    return _make


@pytest.fixture(scope="session")
def rows() -> list[dict[str, Any]]:
    """200 raw feature rows (JSON-ready) for request payloads."""
    return sample_rows(load_config(None, TEST_DATA), 200)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, uniquely named PostgreSQL database (``abx_t_<uuid>``; the server is shared and its
    other databases are never touched), dropped afterwards."""
    from sqlalchemy import create_engine, text

    name = f"abx_t_{uuid.uuid4().hex}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        from pipeline_components.serving import operations

        operations._STORES.clear()  # cached control stores whose database goes away
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def docker_engine() -> Any:
    """A pinged docker client on abx's private engine (started if down); DOCKER_HOST exported."""
    res = subprocess.run(["bash", str(REPO / "scripts" / "dockerd.sh")], capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, f"scripts/dockerd.sh failed:\n{res.stderr}"
    host = next(line.split("=", 1)[1] for line in res.stdout.splitlines()
                if line.startswith("DOCKER_HOST="))
    os.environ["DOCKER_HOST"] = host
    from pipeline_components.deploy.engine import docker_client

    client = docker_client()
    yield client
    client.close()


@pytest.fixture(scope="session")
def endpoint_image(docker_engine: Any) -> str:
    """``abx-endpoint:<git sha>`` built from this checkout (a no-op rebuild when cached)."""
    from pipeline_components.deploy.image import build_image

    return build_image(REPO, client=docker_engine, log=lambda m: None).tag
