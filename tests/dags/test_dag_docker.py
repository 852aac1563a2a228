"""The experiment DAG with ``serving.backend: docker``: the endpoint runs as containers.

Kept lean: a bootstrap run (no canary, so no container) then one canary run on tiny settings, the
prediction log and control state in a fresh PostgreSQL database. No endpoint is up, so
``deploy_canary`` starts it on the docker backend (two real containers of the endpoint image
running ``abx endpoint serve``), the canary spreads its simulated users over both replicas, the
run decides (promote or
roll back: on a busy 2-core box a guardrail may stay unproven, which rolls back; the statistics
are tested elsewhere), the registry follows the decision, and the teardown stops the endpoint it
started, leaving no container behind. The engine's own event stream is the witness that the
replicas were containers.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.dags.world import alias, bootstrap, cfg_of, make_world, run

pytestmark = pytest.mark.slow


def test_canary_with_the_docker_backend_decides_and_cleans_up(
    airflow_db: Path, endpoint_image: str, docker_engine: Any, pg_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from pipeline_components.deploy.docker import DockerBackend, endpoint_scope
    from pipeline_components.experiment.state import read_state

    world = make_world(tmp_path_factory.mktemp("abx-docker-world"),
                       **{"serving.backend": "docker", "serving.docker.image": endpoint_image,
                          "serving.store_url": pg_url, "endpoint.replicas": 2})
    boot = bootstrap(world, "dock-boot")
    assert boot["__run__"] == "success", boot

    since = int(time.time()) - 1
    states = run(world, "dock-better", families=["logreg"], n_trials=2)
    assert states["__run__"] == "success", states
    assert states["canary"] == "success" and states["cleanup"] == "success"
    cfg = cfg_of(world, "dock-better")
    dep = read_state(cfg, "deployment")
    assert dep["started_endpoint"] is True  # no endpoint was up: this run started it
    action = read_state(cfg, "decision")["action"]
    assert action in ("promote", "rollback")
    assert states["promote" if action == "promote" else "rollback"] == "success", states
    assert alias(world, "champion") == ("2" if action == "promote" else "1")
    assert read_state(cfg, "cleanup")["leftovers"] == []
    assert DockerBackend(docker_engine).find_endpoint(cfg) == []

    events = docker_engine.events(since=since, until=int(time.time()) + 1, decode=True,
                                  filters={"type": "container", "label": endpoint_scope(cfg)})
    seen = [(e["Action"], e["Actor"]["Attributes"]) for e in events]
    started = [a for kind, a in seen if kind == "start"]
    assert len(started) == 2, seen  # endpoint.replicas
    assert {a["org.abx.experiment"] for a in started} == {"dock-better"}
    assert {a["image"] for a in started} == {endpoint_image}
    destroyed = [a["name"] for kind, a in seen if kind == "destroy"]
    assert sorted(destroyed) == sorted(a["name"] for a in started)
    for i in (0, 1):  # each replica's output kept after its container went
        log = cfg.state_dir / "endpoints" / cfg.endpoint.name / f"replica-{i}.log"
        assert "abx endpoint 'abx' replica on" in log.read_text()
    # the canary's simulated users went to both replicas, every one answered
    urls = sorted(f"http://127.0.0.1:{a['org.abx.port']}" for a in started)
    for step in read_state(cfg, "canary")["steps"]:
        assert sorted(step["traffic"]["urls"]) == urls
        assert step["simulation"]["answered"] == step["simulation"]["sent"] == step["requests"]
