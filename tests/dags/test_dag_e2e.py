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

pytestmark = pytest.mark.slow

DAGS = Path(__file__).resolve().parents[2] / "dags"
WEAK = {"C": {"type": "categorical", "choices": [0.0001]},
        "class_weight": {"type": "categorical", "choices": ["balanced"]}}


@pytest.fixture(scope="module")
def world(airflow_db: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from airflow.dag_processing.dagbag import DagBag

    root = tmp_path_factory.mktemp("abx-world")
    dag = DagBag(dag_folder=str(DAGS)).get_dag("ab_experiment")
    overrides = {
        "experiment.state_dir": str(root / "state"), "data.raw_path": str(root / "raw.parquet"),
        "features.out_dir": str(root / "features"), "report.out_dir": str(root / "reports"),
        "validation.report_path": str(root / "validation.json"),
        "data.synthetic.n_users": 4000, "training.cv_folds": 2, "training.workers": 1,
        "serving.port": 0, "endpoint.port": 0, "simulator.max_requests": 1200,
        "analysis.mde": 0.1,
        # p99 latency on a loaded 2-core box swings by 100 ms between looks; these scenarios are
        # about the decision path, not the latency guardrail (tests/analysis covers that)
        "analysis.latency_margin_ms": 1000.0,
    }
    return {"dag": dag, "root": root, "overrides": overrides}


def run(world: dict[str, Any], exp_id: str, **form: Any) -> dict[str, str]:
    """One DAG run; returns {task_id: state} (mapped tasks: the worst state)."""
    extra = form.pop("overrides", {})
    conf = {"experiment_id": exp_id, "canary_steps": [0.5], "min_samples": 540,
            "rate_per_s": 500, **form, "overrides": {**world["overrides"], **extra}}
    dr = world["dag"].test(run_conf=conf)
    states: dict[str, str] = {"__run__": str(dr.state)}
    for ti in dr.get_task_instances():
        states.setdefault(ti.task_id, str(ti.state))
        if str(ti.state) != "success":
            states[ti.task_id] = str(ti.state)
    return states


def cfg_of(world: dict[str, Any], exp_id: str) -> Any:
    from pipeline_components.experiment.config import config_for

    return config_for({"params_path": str(DAGS.parent / "params.yaml"), "experiment_id": exp_id,
                       "overrides": world["overrides"]})


def alias(world: dict[str, Any], name: str) -> str | None:
    from pipeline_components.registry import get_alias_version

    return get_alias_version(cfg_of(world, "probe"), name)


def test_1_bootstrap_makes_the_first_champion(world: dict[str, Any]) -> None:
    states = run(world, "e2e-boot", families=["logreg"], n_trials=1,
                 overrides={"training.search_spaces": {"logreg": WEAK}})
    assert states["__run__"] == "success", states
    assert states["no_canary"] == "success" and states["deploy_canary"] == "skipped"
    assert states["cleanup"] == "skipped" and states["report"] == "success"
    assert alias(world, "champion") == "1"


def test_2_truly_better_challenger_is_promoted(world: dict[str, Any]) -> None:
    from pipeline_components.experiment.state import read_state

    states = run(world, "e2e-better", families=["logreg"], n_trials=2)
    assert states["__run__"] == "success", states
    assert states["promote"] == "success" and states["rollback"] == "skipped"
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
