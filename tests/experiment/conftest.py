"""Fixtures for the experiment stage: a tiny real HTTP endpoint and a tmp MLflow registry."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pipeline_components.config import Config, load_config


class Recorder:
    """A stand-in for the router's HTTP contract that records what the simulator sent."""

    def __init__(self) -> None:
        self.predicts: list[dict[str, Any]] = []
        self.feedback: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def predict(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        await asyncio.sleep(0.002)
        self.in_flight -= 1
        self.predicts.append(body)
        # deterministic "model": the first feature's sign
        p = 0.9 if body["features"]["x0"] > 0 else 0.1
        variant = "challenger" if int(body["unit_id"]) % 2 else "champion"
        return JSONResponse({"prediction": p, "variant": variant, "model_version": "1",
                             "request_id": f"r{body['unit_id']}"})

    async def fb(self, request: Request) -> JSONResponse:
        self.feedback.append(await request.json())
        return JSONResponse({"status": "ok"})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _recorder() -> Iterator[tuple[str, Recorder]]:
    """A Recorder behind a real uvicorn server on a free loopback port."""
    rec = Recorder()
    app = Starlette(routes=[Route("/predict", rec.predict, methods=["POST"]),
                            Route("/feedback", rec.fb, methods=["POST"])])
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}", rec
    server.should_exit = True
    thread.join(5)


@pytest.fixture()
def recorder_url() -> Iterator[tuple[str, Recorder]]:
    with _recorder() as got:
        yield got


@pytest.fixture()
def two_recorders() -> Iterator[list[tuple[str, Recorder]]]:
    """Two replicas of one endpoint, as far as the simulator can tell."""
    with _recorder() as a, _recorder() as b:
        yield [a, b]


@pytest.fixture(scope="session")
def mlflow_db_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, migrated MLflow sqlite store, made once (migrations cost ~10 s) and copied."""
    from pipeline_components.tracking import configure_mlflow

    state = tmp_path_factory.mktemp("mlflow-template")
    configure_mlflow(load_config("params.yaml", {"experiment.state_dir": str(state)}))
    return state / "mlflow.db"


@pytest.fixture()
def tmp_cfg(tmp_path: Path, mlflow_db_template: Path) -> Config:
    """A config whose every file and store lives under tmp_path (MLflow store pre-migrated)."""
    (tmp_path / "state").mkdir()
    shutil.copy(mlflow_db_template, tmp_path / "state" / "mlflow.db")
    return load_config("params.yaml", {
        "experiment.id": "t1",
        "experiment.state_dir": str(tmp_path / "state"),
        "report.out_dir": str(tmp_path / "reports"),
        "canary.lock_timeout_s": 0.5,
    })


PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture()
def pg_url() -> Iterator[Any]:
    """Factory of a fresh PostgreSQL database (``abx_t_<uuid>``) on the shared server, dropped
    afterwards; made on first call only, so tests that do not use it pay nothing."""
    import uuid

    import sqlalchemy as sa

    made: list[str] = []

    def make() -> str:
        if not made:
            made.append(f"abx_t_{uuid.uuid4().hex}")
            engine = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
            with engine.connect() as conn:
                conn.execute(sa.text(f"CREATE DATABASE {made[0]}"))
            engine.dispose()
        return f"postgresql+psycopg://postgres@127.0.0.1:5432/{made[0]}"

    yield make
    if made:
        engine = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {made[0]} WITH (FORCE)"))
        engine.dispose()
