"""The long-lived endpoint on the docker backend: real containers of the endpoint image.

Two replicas of ``abx endpoint serve`` on one PostgreSQL control store (a fresh database), a model
loaded after the containers started (so artifacts must be reachable inside them), the replicas'
labels, limits and health checks, and look-alike containers abx did not start, which
``find_endpoint``/``stop_endpoint`` must leave running.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from pipeline_components.config import Config
from pipeline_components.deploy.docker import DockerBackend
from pipeline_components.errors import DeploymentError
from pipeline_components.serving import operations as ops
from pipeline_components.store import make_engine

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture
def docker_cfg(make_cfg: Callable[..., Config], endpoint_image: str) -> Callable[..., Config]:
    def _make(overrides: dict[str, Any] | None = None) -> Config:
        return make_cfg({"serving.backend": "docker", "serving.docker.image": endpoint_image,
                         "serving.docker.cpus": 0.5, "serving.docker.memory": "600m",
                         **(overrides or {})})

    return _make


@pytest.fixture
def strangers(docker_engine: Any, endpoint_image: str) -> Iterator[Callable[..., Any]]:
    """Start containers abx did not start (same image, look-alike labels); removed afterwards."""
    made: list[Any] = []

    def _start(labels: dict[str, str]) -> Any:
        c = docker_engine.containers.run(
            endpoint_image, ["-c", "import time; time.sleep(600)"], entrypoint=["python"],
            network_mode="host", detach=True, labels=labels, stop_signal="SIGKILL")
        made.append(c)
        return c

    yield _start
    for c in made:
        c.remove(force=True)


def _predict(url: str, rows: list[dict[str, Any]], prefix: str, n: int = 20) -> list[str]:
    body = {"instances": [{"unit_id": f"{prefix}{i}", "features": rows[i]} for i in range(n)]}
    r = httpx.post(f"{url}/predict", json=body, timeout=30)
    assert r.status_code == 200, r.text
    return [p["variant"] for p in r.json()["predictions"]]


def _health(c: Any, timeout_s: float = 90.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        c.reload()
        status = str(c.attrs["State"].get("Health", {}).get("Status", "none"))
        if status != "starting":
            return status
        time.sleep(0.5)
    return "starting"


def test_two_container_replicas_follow_one_control_state_and_spare_foreign_containers(
    docker_cfg: Callable[..., Config], docker_engine: Any, rows: list[dict[str, Any]],
    pg_url: str, strangers: Callable[..., Any],
) -> None:
    cfg = docker_cfg({"serving.store_url": pg_url, "endpoint.replicas": 2,
                      "experiment.id": "dock-ep"})
    state = str(cfg.state_dir.resolve())
    foreign = [
        strangers({"org.abx.role": "endpoint", "org.abx.endpoint": cfg.endpoint.name,
                   "org.abx.state-dir": state}),  # no managed-by label
        strangers({"org.abx.managed-by": "abx", "org.abx.role": "endpoint",
                   "org.abx.endpoint": cfg.endpoint.name, "org.abx.state-dir": "/elsewhere",
                   "org.abx.port": "1", "org.abx.replica": "0"}),  # another state dir
        strangers({"org.abx.managed-by": "abx", "org.abx.role": "endpoint",
                   "org.abx.endpoint": "other", "org.abx.state-dir": state,
                   "org.abx.port": "1", "org.abx.replica": "0"}),  # another endpoint
    ]
    backend = DockerBackend(docker_engine)
    ops.ensure_endpoint(cfg, "test")
    try:
        deps = backend.start_endpoint(cfg)
        assert len(deps) == 2 and len({d.url for d in deps}) == 2
        assert [d.container for d in backend.start_endpoint(cfg)] == [d.container for d in deps]
        assert len(ops.live_replicas(cfg)) == 2
        c0 = docker_engine.containers.get(deps[0].container)
        labels = c0.labels
        assert labels["org.abx.role"] == "endpoint" and labels["org.abx.endpoint"] == "abx"
        assert labels["org.abx.experiment"] == "dock-ep" and labels["org.abx.state-dir"] == state
        assert c0.attrs["Config"]["Cmd"][:2] == ["endpoint", "serve"]
        host = c0.attrs["HostConfig"]
        assert host["NanoCpus"] == 500_000_000 and host["Memory"] == 600 * 1024**2
        assert host["NetworkMode"] == "host"
        assert _health(c0) == "healthy"

        # a model loaded after the containers started: every replica loads and routes it
        ops.load(cfg, "challenger", "models:/abx-model/2", "test", weight=0.5)
        va, vb = (_predict(d.url, rows, "u") for d in deps)
        assert va == vb and {"champion", "challenger"} <= set(va)  # a pure hash: they agree
        assert "abx endpoint 'abx' replica on" in backend.endpoint_logs(cfg)

        stopped = backend.stop_endpoint(cfg)
        assert sorted(d.container for d in stopped) == sorted(d.container for d in deps)
        assert backend.find_endpoint(cfg) == []
        folder = cfg.state_dir / "endpoints" / cfg.endpoint.name
        assert (folder / "replica-0.log").is_file() and (folder / "replica-1.log").is_file()
        assert "replica on" in (folder / "replica-1.log").read_text()
        with make_engine(cfg.store_url).connect() as conn:  # SIGTERM: both writers flushed
            n = conn.execute(text("SELECT COUNT(*) FROM predictions")).scalar()
        assert n == 40
        for c in foreign:
            c.reload()
            assert c.status == "running"  # never touched by find/stop
    finally:
        backend.stop_endpoint(cfg)


def test_refusals_leave_nothing(docker_cfg: Callable[..., Config], docker_engine: Any) -> None:
    backend = DockerBackend(docker_engine)
    sqlite2 = docker_cfg({"endpoint.replicas": 2})
    with pytest.raises(DeploymentError, match="PostgreSQL control store"):
        backend.start_endpoint(sqlite2)
    missing = docker_cfg({"serving.docker.image": "abx-endpoint:none"})
    with pytest.raises(DeploymentError, match="abx image build"):
        backend.start_endpoint(missing)
    assert backend.find_endpoint(missing) == []


def test_a_replica_that_cannot_start_fails_fast_and_is_removed(
        docker_cfg: Callable[..., Config], docker_engine: Any) -> None:
    """The champion cannot be loaded (its pinned version is gone from the control state's
    registry): start_endpoint raises with the replica's own words, no container is left."""
    cfg = docker_cfg({"experiment.id": "dock-ep-bad"})
    ops.ensure_endpoint(cfg, "test")
    with ops.open_control(cfg).engine.begin() as conn:
        conn.execute(text("UPDATE abx_endpoint_variants SET pinned_uri = 'models:/abx-model/99'"))
    backend = DockerBackend(docker_engine)
    with pytest.raises(DeploymentError):
        backend.start_endpoint(cfg, timeout_s=120)
    scope = [f"org.abx.state-dir={cfg.state_dir.resolve()}", "org.abx.role=endpoint"]
    assert docker_engine.containers.list(all=True, filters={"label": scope}) == []
    log = (cfg.state_dir / "endpoints" / cfg.endpoint.name / "replica-0.log").read_text()
    assert "abx-model/99" in log
