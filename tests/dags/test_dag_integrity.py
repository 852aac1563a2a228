"""DAG integrity: imports cleanly and cheaply, no cycles, params schema, retries, teardown."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
DAG_FILE = str(DAGS / "ab_experiment.py")

HEAVY = ("pandas", "sklearn", "mlflow", "great_expectations", "optuna", "matplotlib", "scipy")


@pytest.fixture(scope="module")
def dag(airflow_db: Path) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    return bag.get_dag("ab_experiment")


def test_dag_file_imports_no_heavy_library() -> None:
    """Parsing the DAG must not pull in pandas/sklearn/mlflow/GX: the processor parses often."""
    code = ("import importlib.util, json, sys; "
            f"spec = importlib.util.spec_from_file_location('d', {DAG_FILE!r}); "
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
            f"print(json.dumps([h for h in {HEAVY!r} if h in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, timeout=120, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_structure(dag: Any) -> None:
    dag.check_cycle()
    ids = set(dag.task_dict)
    assert {"resolve", "data", "validate", "features", "families", "train", "register", "gate",
            "route_gate", "no_canary", "deploy_canary", "canary", "decide", "route_decision",
            "promote", "rollback", "cleanup", "report"} == ids
    assert dag.catchup is False and dag.timetable.expression == "0 2 * * *"
    assert type(dag.task_dict["train"]).__name__.endswith("MappedOperator")  # one per family
    assert dag.task_dict["features"].upstream_task_ids == {"resolve", "validate"}
    assert set(dag.task_dict["route_decision"].downstream_task_ids) == {"promote", "rollback"}
    assert set(dag.task_dict["route_gate"].downstream_task_ids) == {"deploy_canary", "no_canary"}


def test_tasks_are_the_steps_of_the_stage_definition(dag: Any) -> None:
    from pipeline_components.stages import STEPS

    assert set(dag.task_dict) == {"resolve"} | {s.name for s in STEPS}
    for step in STEPS:
        t = dag.task_dict[step.name]
        assert t.upstream_task_ids == {"resolve", *step.upstream}, step.name
        assert t.is_setup == (step.kind == "setup") and t.is_teardown == (step.kind == "teardown")
        assert ("Branch" in type(t).__name__) == (step.kind == "branch"), step.name
        assert (getattr(t, "mode", None) == "reschedule") == (step.kind == "sensor"), step.name
        if step.kind != "teardown":  # Airflow gives a teardown its own rule
            assert str(t.trigger_rule).rsplit(".", 1)[-1].lower() == step.trigger_rule


def test_every_task_retries(dag: Any) -> None:
    assert {t.task_id: t.retries for t in dag.tasks if t.retries < 1} == {}


def test_cleanup_is_a_teardown_of_the_deployment(dag: Any) -> None:
    cleanup = dag.task_dict["cleanup"]
    assert cleanup.is_teardown
    assert dag.task_dict["deploy_canary"].is_setup
    assert "deploy_canary" in cleanup.upstream_task_ids
    assert dag.task_dict["report"].trigger_rule == "none_failed_min_one_success"
    assert "cleanup" in dag.task_dict["report"].upstream_task_ids


def test_assets(dag: Any) -> None:
    assert [a.uri for a in dag.task_dict["features"].outlets] == ["abx://data/features"]
    assert [a.uri for a in dag.task_dict["promote"].outlets] == ["abx://registry/champion"]


@pytest.mark.parametrize(("name", "good", "bad"), [
    ("families", ["logreg", "hist_gbdt"], "logreg"),
    ("n_trials", 5, 0),
    ("canary_steps", [0.05, 0.5], "0.5"),
    ("alpha", 0.05, 0.7),
    ("mde", 0.02, 0),
    ("min_samples", 100, 0),
    ("max_duration_s", 60, -1),
    ("rate_per_s", 50, 0),
    ("overrides", {"training.cv_folds": 2}, [1]),
])
def test_params_schema(dag: Any, name: str, good: Any, bad: Any) -> None:
    from airflow.sdk.exceptions import ParamValidationError

    param = dag.params.get_param(name)
    assert param.resolve(good) == good
    assert param.resolve(None) is None  # empty field = keep the params.yaml value (not required)
    with pytest.raises(ParamValidationError):
        param.resolve(bad)


def test_every_form_field_has_a_title_and_says_what_it_means(dag: Any) -> None:
    for name in dag.params:
        param = dag.params.get_param(name)
        schema = param.schema
        assert schema.get("title"), name
        assert len(param.description or "") > 40, (name, param.description)
        assert "null" in schema["type"], name  # the UI shows a field as required otherwise
        assert param.value is None  # every field starts empty


def test_unpausing_never_schedules_a_past_nightly_run(dag: Any) -> None:
    """With no run yet, the first scheduled run is the next cron time, never the last one."""
    from airflow.serialization.encoders import coerce_to_core_timetable
    from airflow.timetables.base import TimeRestriction
    from airflow.utils import timezone

    # What the scheduler computes when the DAG is unpaused with no run yet (checked for real:
    # `airflow standalone`, PATCH is_paused=false, no run was created; next run 02:00 tomorrow).
    restriction = TimeRestriction(earliest=dag.start_date, latest=None, catchup=dag.catchup)
    info = coerce_to_core_timetable(dag.timetable).next_dagrun_info(
        last_automated_data_interval=None, restriction=restriction)
    assert info is not None and info.run_after > timezone.utcnow()


@pytest.mark.parametrize(("value", "expected"), [
    ("0 3 * * *", "0 3 * * *"), ("", None), ("none", None), (" None ", None), (None, None)])
def test_schedule_can_be_switched_off(value: str | None, expected: str | None) -> None:
    sys.path.insert(0, str(DAGS))
    try:
        from ab_experiment import schedule_from
    finally:
        sys.path.remove(str(DAGS))
    got = schedule_from(value)
    assert (got.expression if got is not None else None) == expected


def test_training_and_canary_tasks_use_their_pools(monkeypatch: pytest.MonkeyPatch,
                                                   airflow_db: Path) -> None:
    """scripts/scale-demo.sh names the pools by environment when the DAG is parsed."""
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("ABX_POOL_TRAINING", "abx_training")
    monkeypatch.setenv("ABX_POOL_CANARY", "abx_canary")
    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    pools = {t.task_id: t.pool for t in bag.get_dag("ab_experiment").tasks}
    assert pools["train"] == "abx_training"
    assert pools["deploy_canary"] == pools["canary"] == "abx_canary"
    assert {p for k, p in pools.items() if k not in ("train", "deploy_canary", "canary")} == \
        {"default_pool"}


def test_without_pool_names_every_task_uses_the_default_pool(dag: Any) -> None:
    assert {t.pool for t in dag.tasks} == {"default_pool"}
