"""The whole ab_experiment DAG through ``dag.test()`` on tiny settings, with known truths.

One Airflow metadata DB (migrated once) and one abx world (MLflow registry, prediction log, data)
under a tmp folder are shared by the scenarios, in order, like successive nightly runs:

1. bootstrap: a deliberately weak model (logistic regression with C=1e-4 and balanced class
   weights: ~0.69 decision accuracy on this data) becomes the first champion;
2. a truly better challenger (tuned logistic regression, ~0.80 accuracy) is canaried and promoted;
3. a failing challenger (faults.challenger_failure_rate=1.0) trips the breaker and is rolled back,
   the champion alias unchanged;
4. an injected failure after deploy: the DAG run fails, the teardown still stops the router;
5. re-running finished tasks changes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.dags.world import DAGS, alias, bootstrap, cfg_of, make_world, run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(airflow_db: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return make_world(tmp_path_factory.mktemp("abx-world"))


def test_1_bootstrap_makes_the_first_champion(world: dict[str, Any]) -> None:
    states = bootstrap(world, "e2e-boot")
    assert states["__run__"] == "success", states
    assert states["no_canary"] == "success" and states["deploy_canary"] == "skipped"
    assert states["cleanup"] == "skipped" and states["report"] == "success"
    assert alias(world, "champion") == "1"


def test_2_truly_better_challenger_is_promoted(world: dict[str, Any]) -> None:
    from pipeline_components.experiment.state import read_state

    states = run(world, "e2e-better", families=["logreg"], n_trials=2)
    assert states["__run__"] == "success", states
    assert states["promote"] == "success" and states["rollback"] == "skipped"
    assert states["__retried__"] == ""
    assert states["cleanup"] == "success" and states["report"] == "success"
    cfg = cfg_of(world, "e2e-better")
    decision = read_state(cfg, "decision")
    assert decision["action"] == "promote"
    assert "EFFECT_POSITIVE" in [r["code"] for r in decision["reasons"]]
    assert alias(world, "champion") == "2" and alias(world, "challenger") is None
    report = read_state(cfg, "report")
    assert Path(report["html"]).is_file() and report["champion_after"] == "2"
    assert read_state(cfg, "cleanup")["leftovers"] == []


def test_3_failing_challenger_is_rolled_back(world: dict[str, Any]) -> None:
    from pipeline_components.experiment.state import read_state

    champion = alias(world, "champion")
    states = run(world, "e2e-failing", families=["logreg"], n_trials=2,
                 overrides={"faults.challenger_failure_rate": 1.0, "registry.gate_margin": -1.0})
    assert states["__run__"] == "success", states
    assert states["rollback"] == "success" and states["promote"] == "skipped"
    assert states["__retried__"] == ""  # e.g. deploy_canary waiting on a replica already gone
    decision = read_state(cfg_of(world, "e2e-failing"), "decision")
    assert decision["action"] == "rollback"
    assert decision["reasons"][0]["code"] == "BREAKER"
    assert alias(world, "champion") == champion and alias(world, "challenger") is None


def test_4_teardown_runs_after_an_injected_failure(world: dict[str, Any]) -> None:
    from pipeline_components.deploy.local import LocalBackend, _pid_alive
    from pipeline_components.experiment.state import read_state

    champion = alias(world, "champion")
    states = run(world, "e2e-broken", families=["logreg"], n_trials=1,
                 overrides={"faults.fail_canary": True, "registry.gate_margin": -1.0})
    assert states["__run__"] == "failed", states
    assert states["canary"] == "failed" and states["cleanup"] == "success"
    assert states["report"] == "upstream_failed"
    cfg = cfg_of(world, "e2e-broken")
    dep = read_state(cfg, "deployment")  # the run started the endpoint, so it stopped it
    assert dep["started_endpoint"] and not any(_pid_alive(p) for p in dep["pids"])
    assert LocalBackend().find_endpoint(cfg) == []
    assert alias(world, "champion") == champion


def test_5_rerunning_finished_tasks_changes_nothing(world: dict[str, Any]) -> None:
    """What an Airflow retry or a cleared task does: same versions, same aliases, same files."""
    from pipeline_components.experiment import tasks
    from pipeline_components.experiment.state import read_state

    cfg = cfg_of(world, "e2e-better")
    conf = {"params_path": str(DAGS.parent / "params.yaml"), "experiment_id": "e2e-better",
            "overrides": {**world["overrides"], "training.families": ["logreg"],
                          "training.n_trials": 2, "canary.steps": [0.5]}}
    before = (alias(world, "champion"), alias(world, "challenger"))
    assert tasks.register(conf)["version"] == "2"  # no new version, no alias moved
    assert tasks.gate(conf, {})["champion"] == "1"  # still the champion it was compared with
    decision = read_state(cfg, "decision")
    assert tasks.promote(conf, decision, {})["changed"] is False
    assert tasks.canary(conf, read_state(cfg, "deployment"))["decision"] == decision
    assert tasks.cleanup(conf)["stopped"] == []
    assert (alias(world, "champion"), alias(world, "challenger")) == before


def test_6_live_canary_on_a_running_endpoint_fed_by_an_outside_client(
        world: dict[str, Any]) -> None:
    """canary.traffic=live: the endpoint was up before the run, traffic comes from another
    process (`abx simulate --url`), the sensor waits for it; cleanup leaves the endpoint up."""
    import subprocess
    import sys

    import httpx

    from pipeline_components.deploy.local import LocalBackend
    from pipeline_components.experiment.state import read_state
    from pipeline_components.serving import operations as ops

    cfg = cfg_of(world, "e2e-live")
    backend = LocalBackend()
    ops.ensure_endpoint(cfg, "test")
    url = backend.start_endpoint(cfg)[0].url
    sets = [a for k, v in {**world["overrides"], "simulator.rate_per_s": 300}.items()
            for a in ("--set", f"{k}={v}")]
    client = subprocess.Popen(
        [sys.executable, "-c", "from pipeline_components.cli import main; main()", "simulate",
         "--params", str(DAGS.parent / "params.yaml"), *sets, "--url", url, "--n", "100000",
         "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        states = run(world, "e2e-live", families=["logreg"], n_trials=1, min_samples=150,
                     overrides={"canary.traffic": "live", "canary.extra_looks": 0,
                                "registry.gate_margin": -1.0})
        assert states["__run__"] == "success", states
        assert states["canary"] == "success" and states["cleanup"] == "success"
        canary = read_state(cfg, "canary")
        assert canary["traffic"] == "live" and canary["steps"]
        assert all("traffic" not in s for s in canary["steps"])  # the pipeline sent nothing
        assert read_state(cfg, "deployment")["started_endpoint"] is False
        assert backend.find_endpoint(cfg), "cleanup stopped an endpoint it did not start"
        st = ops.status(cfg)
        assert list(st["variants"]) == ["champion"] and st["experiment_id"] is None
        champion = alias(world, "champion")
        assert st["variants"]["champion"]["model_version"] == champion
        assert client.poll() is None  # the outside client kept being served throughout
        r = httpx.get(f"{url}/readyz")
        assert r.status_code == 200
    finally:
        client.terminate()
        client.wait(30)
        backend.stop_endpoint(cfg)
        ops._STORES.clear()
