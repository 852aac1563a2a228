"""One abx "world" for whole-DAG tests: a tmp folder holding the MLflow registry, the prediction
log, the data and the reports, the ``ab_experiment`` DAG parsed once, and helpers to run it with
``dag.test()`` and read what a run left behind. Shared by the local and the docker-backend runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

DAGS = Path(__file__).resolve().parents[2] / "dags"
# a deliberately weak logistic regression (~0.69 decision accuracy on the synthetic data)
WEAK = {"C": {"type": "categorical", "choices": [0.0001]},
        "class_weight": {"type": "categorical", "choices": ["balanced"]}}


def make_world(root: Path, **overrides: Any) -> dict[str, Any]:
    """The DAG and tiny settings whose every location is under ``root``."""
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(DAGS)).get_dag("ab_experiment")
    base = {
        "experiment.state_dir": str(root / "state"), "data.raw_path": str(root / "raw.parquet"),
        "features.out_dir": str(root / "features"), "report.out_dir": str(root / "reports"),
        "validation.report_path": str(root / "validation.json"),
        "data.synthetic.n_users": 4000, "training.cv_folds": 2, "training.workers": 1,
        "serving.port": 0, "endpoint.port": 0, "simulator.max_requests": 1200,
        "analysis.mde": 0.1,
        # p99 latency on a loaded 2-core box swings by 100 ms between looks; these runs are
        # about the decision path, not the latency guardrail (tests/analysis covers that)
        "analysis.latency_margin_ms": 1000.0,
    }
    return {"dag": dag, "root": root, "overrides": {**base, **overrides}}


def run(world: dict[str, Any], exp_id: str, **form: Any) -> dict[str, str]:
    """One DAG run; returns {task_id: state} (mapped tasks: the worst state)."""
    extra = form.pop("overrides", {})
    conf = {"experiment_id": exp_id, "canary_steps": [0.5], "min_samples": 540,
            "rate_per_s": 500, **form, "overrides": {**world["overrides"], **extra}}
    dr = world["dag"].test(run_conf=conf)
    states: dict[str, str] = {"__run__": str(dr.state)}
    retried = []
    for ti in dr.get_task_instances():
        states.setdefault(ti.task_id, str(ti.state))
        if str(ti.state) != "success":
            states[ti.task_id] = str(ti.state)
        if (ti.try_number or 0) > 1:  # a retry hides a stall or a flaky step: tests check it
            retried.append(ti.task_id)
    states["__retried__"] = ",".join(sorted(set(retried)))
    return states


def bootstrap(world: dict[str, Any], exp_id: str) -> dict[str, str]:
    """The first run on an empty registry: the weak model becomes the champion (no canary)."""
    return run(world, exp_id, families=["logreg"], n_trials=1,
               overrides={"training.search_spaces": {"logreg": WEAK}})


def cfg_of(world: dict[str, Any], exp_id: str) -> Any:
    from pipeline_components.experiment.config import config_for

    return config_for({"params_path": str(DAGS.parent / "params.yaml"), "experiment_id": exp_id,
                       "overrides": world["overrides"]})


def alias(world: dict[str, Any], name: str) -> str | None:
    from pipeline_components.registry import get_alias_version

    return get_alias_version(cfg_of(world, "probe"), name)
