"""The docker backend with real containers of the endpoint image on abx's private engine."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text

from pipeline_components.config import Config
from pipeline_components.deploy import RouterClient
from pipeline_components.deploy.docker import DockerBackend
from pipeline_components.errors import DeploymentError
from pipeline_components.serving.testing import TEST_TOKEN
from pipeline_components.store import make_engine

pytestmark = pytest.mark.slow


@pytest.fixture
def docker_cfg(make_cfg: Callable[..., Config], endpoint_image: str,
               monkeypatch: pytest.MonkeyPatch) -> Callable[..., Config]:
    monkeypatch.setenv("ABX_ADMIN_TOKEN", TEST_TOKEN)

    def _make(overrides: dict[str, Any] | None = None) -> Config:
        return make_cfg({"serving.backend": "docker", "serving.docker.image": endpoint_image,
                         "serving.docker.cpus": 0.5, "serving.docker.memory": "600m",
                         **(overrides or {})})

    return _make


def foreign(client: Any, image: str, labels: dict[str, str]) -> Any:
    """A container abx did not start (same image, look-alike labels): must never be touched."""
    return client.containers.run(image, ["-c", "import time; time.sleep(600)"],
                                 entrypoint=["python"], network_mode="host", detach=True,
                                 labels=labels, stop_signal="SIGKILL")


def health(c: Any, timeout_s: float = 60.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        c.reload()
        status = c.attrs["State"].get("Health", {}).get("Status", "none")
        if status != "starting":
            return str(status)
        time.sleep(0.5)
    return "starting"


def test_two_replicas_serve_log_and_stop_without_touching_foreign_containers(
    docker_cfg: Callable[..., Config], docker_engine: Any, endpoint_image: str,
    rows: list[dict[str, Any]],
) -> None:
    cfg = docker_cfg({"experiment.id": "dock-2", "serving.docker.replicas": 2})
    state = str(cfg.state_dir.resolve())
    strangers = [
        foreign(docker_engine, endpoint_image, {"org.abx.experiment": "dock-2"}),
        foreign(docker_engine, endpoint_image, {"org.abx.managed-by": "abx",
                                                "org.abx.experiment": "dock-2",
                                                "org.abx.state-dir": "/elsewhere"}),
    ]
    backend = DockerBackend(docker_engine)
    try:
        dep = backend.start(cfg)
        assert len(dep.replicas) == 2 and len(set(dep.urls)) == 2
        answers = 0
        for i, url in enumerate(dep.urls):
            with RouterClient(url, TEST_TOKEN) as c:
                for j, row in enumerate(rows[:20]):
                    assert c.predict(f"u{i}-{j}", row)["status"] == "ok"
                    answers += 1
                assert c.status()["variants"]["champion"]["model_version"] == "1"
        c0 = docker_engine.containers.get(dep.replicas[0]["container"])
        assert c0.labels["org.abx.experiment"] == "dock-2"
        assert c0.labels["org.abx.endpoint"] == cfg.registry.model_name
        host = c0.attrs["HostConfig"]
        assert host["NanoCpus"] == 500_000_000 and host["Memory"] == 600 * 1024**2
        assert host["NetworkMode"] == "host"
        assert health(c0) == "healthy"
        assert "abx router for experiment 'dock-2'" in backend.logs(dep)
        assert [d.container for d in backend.find("dock-2", cfg)] == [dep.container]

        backend.stop(dep)
        assert backend.find("dock-2", cfg) == []
        assert (cfg.experiment_dir / "router" / "router-1.log").is_file()
        with make_engine(cfg.store_url).connect() as conn:  # SIGTERM: both writers flushed
            n = conn.execute(text("SELECT COUNT(*) FROM predictions")).scalar()
        assert n == answers
        for s in strangers:
            s.reload()
            assert s.status == "running"  # foreign containers survive find/stop
        assert state  # scoped by state dir: the look-alike above has another
    finally:
        for s in strangers:
            s.remove(force=True)
        for d in backend.find("dock-2", cfg):
            backend.stop(d)


def test_start_fails_fast_and_leaves_nothing(docker_cfg: Callable[..., Config],
                                              docker_engine: Any) -> None:
    cfg = docker_cfg({"experiment.id": "dock-bad"})
    backend = DockerBackend(docker_engine)
    variants = {"champion": "models:/abx-model@champion", "challenger": "models:/abx-model@nope"}
    with pytest.raises(DeploymentError, match="abx-model@nope"):
        backend.start(cfg, variants, timeout_s=90)
    assert backend.find("dock-bad", cfg) == []
    left = docker_engine.containers.list(all=True, filters={"label": "org.abx.experiment=dock-bad"})
    assert left == []
    assert "abx-model@nope" in (cfg.experiment_dir / "router" / "router-0.log").read_text()

    missing = docker_cfg({"experiment.id": "dock-noimg",
                          "serving.docker.image": "abx-endpoint:none"})
    with pytest.raises(DeploymentError, match="abx image build"):
        backend.start(missing)
