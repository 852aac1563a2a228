"""
### ab_experiment: train a challenger, canary it against the champion, promote or roll back

One DAG run is one experiment (its id is derived from the run id). The chain:

1. **data -> validate -> features**: generate/ingest, Great Expectations suite, seeded splits.
2. **train** (one mapped task per model family, in parallel) -> **register** the best (alias
   `challenger`; the very first run makes it `champion`) -> **gate** (offline, on the holdout).
3. **deploy_canary** (setup: router with champion + challenger) -> **canary** (ramp the challenger's
   traffic step by step with the traffic simulator; stop early on a breaker event, SRM, a guardrail
   breach or a confident result) -> **decide** -> **promote** or **rollback**.
4. **cleanup** (teardown: stops the router even when a step failed) -> **report** (HTML + Markdown,
   logged to MLflow).

The trigger form overrides params.yaml for this run; empty fields keep the params.yaml value.
`overrides` takes any dotted key, e.g. `{"training.cv_folds": 2}`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pendulum
import yaml
from airflow.sdk import Asset, Param, dag, task

F = TypeVar("F", bound=Callable[..., Any])

REPO = Path(__file__).resolve().parents[1]
PARAMS_PATH = Path(os.environ.get("ABX_PARAMS", REPO / "params.yaml"))


def _params_yaml() -> dict[str, Any]:
    """params.yaml read with yaml only (cheap), for the schedule and the form's hints."""
    try:
        return yaml.safe_load(PARAMS_PATH.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}


_P = _params_yaml()
SCHEDULE = str(_P.get("experiment", {}).get("schedule") or "0 2 * * *")
DATA_ASSET = Asset(name="abx_data_version", uri="abx://data/features")
CHAMPION_ASSET = Asset(name="abx_champion_model", uri="abx://registry/champion")
# Errors a retry cannot fix (bad config, bad data, a missing model, injected faults): fail now.
FINAL_ERRORS = frozenset({"ConfigError", "DataError", "DataValidationError", "RegistryError",
                          "InjectedFailure"})


def _hint(section: str, key: str) -> str:
    return f"empty = params.yaml ({_P.get(section, {}).get(key)!r})"


def fail_fast(fn: F) -> F:
    """Turn non-retryable abx errors into AirflowFailException (retries are for flaky I/O)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if any(c.__name__ in FINAL_ERRORS for c in type(exc).__mro__):
                from airflow.exceptions import AirflowFailException

                raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc
            raise

    return wrapper  # type: ignore[return-value]


def _opt(kind: str, section: str, key: str, **extra: Any) -> Param:
    return Param(None, type=["null", kind], description=_hint(section, key), **extra)


PARAMS = {
    "families": _opt("array", "training", "families", items={"type": "string"}),
    "n_trials": _opt("integer", "training", "n_trials", minimum=1),
    "canary_steps": _opt("array", "canary", "steps", items={"type": "number"}),
    "alpha": _opt("number", "analysis", "alpha", exclusiveMinimum=0, maximum=0.5),
    "mde": _opt("number", "analysis", "mde", exclusiveMinimum=0),
    "min_samples": _opt("integer", "canary", "min_samples_per_step", minimum=1),
    "max_duration_s": _opt("number", "canary", "max_duration_s", exclusiveMinimum=0),
    "rate_per_s": _opt("number", "simulator", "rate_per_s", exclusiveMinimum=0),
    "experiment_id": Param(None, type=["null", "string"],
                           description="empty = derived from the run id (one experiment per run)"),
    "overrides": Param({}, type="object", description="any params.yaml key: {\"a.b\": value}"),
}


@dag(
    dag_id="ab_experiment",
    schedule=SCHEDULE,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    params=PARAMS,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=10)},
    tags=["abx", "ab-test"],
    doc_md=__doc__,
)
def ab_experiment() -> None:
    @task
    @fail_fast
    def resolve(params: dict[str, Any] | None = None, run_id: str | None = None) -> dict:
        from pipeline_components.experiment.config import conf_from_form

        return conf_from_form(PARAMS_PATH, params or {}, str(run_id))

    @task
    @fail_fast
    def data(exp: dict) -> dict:
        from pipeline_components.experiment import tasks

        return tasks.data(exp)

    @task
    @fail_fast
    def validate(exp: dict, _data: dict) -> dict:
        from pipeline_components.experiment import tasks

        return tasks.validate(exp)

    @task(outlets=[DATA_ASSET])
    @fail_fast
    def features(exp: dict, _valid: dict) -> dict:
        from pipeline_components.experiment import tasks

        return tasks.features(exp)

    @task
    @fail_fast
    def families(exp: dict, _feats: dict) -> list[str]:
        from pipeline_components.experiment import tasks

        return tasks.families(exp)

    @task(map_index_template="{{ task.op_kwargs['family'] }}")
    @fail_fast
    def train(exp: dict, family: str) -> dict:
        from pipeline_components.experiment import tasks

        return tasks.train(exp, family)

    @task
    @fail_fast
    def register(exp: dict, results: list[dict]) -> dict:
        from pipeline_components.experiment import tasks

        return tasks.register(exp, list(results))

    @task
    @fail_fast
    def gate(exp: dict, registered: dict) -> dict:
        from pipeline_components.experiment import tasks

        return tasks.gate(exp, registered)

    @task.branch
    def route_gate(gate_result: dict) -> str:
        from pipeline_components.experiment import tasks

        return tasks.route_after_gate(gate_result)

    @task
    @fail_fast
    def no_canary(exp: dict, gate_result: dict) -> dict:
        from pipeline_components.experiment import tasks

        return tasks.no_canary(exp, gate_result)

    @task
    @fail_fast
    def deploy_canary(exp: dict) -> dict:
        from pipeline_components.experiment import tasks

        return tasks.deploy(exp)

    @task(execution_timeout=timedelta(hours=2))
    @fail_fast
    def canary(exp: dict, deployment: dict) -> dict:
        from pipeline_components.experiment import tasks

        return tasks.canary(exp, deployment)

    @task
    @fail_fast
    def decide(exp: dict, canary_result: dict) -> dict:
        from pipeline_components.experiment import tasks

        return tasks.decide(exp, canary_result)

    @task.branch
    def route_decision(decision: dict) -> str:
        from pipeline_components.experiment import tasks

        return tasks.route_decision(decision)

    @task(outlets=[CHAMPION_ASSET])
    @fail_fast
    def promote(exp: dict, decision: dict, deployment: dict) -> dict:
        from pipeline_components.experiment import tasks

        return tasks.promote(exp, decision, deployment)

    @task
    @fail_fast
    def rollback(exp: dict, decision: dict, deployment: dict) -> dict:
        from pipeline_components.experiment import tasks

        return tasks.rollback(exp, decision, deployment)

    @task
    def cleanup(exp: dict, deployment: dict) -> dict:
        from pipeline_components.experiment import tasks

        return tasks.cleanup(exp, deployment)

    @task(trigger_rule="none_failed_min_one_success")
    @fail_fast
    def report(exp: dict) -> dict:
        from pipeline_components.experiment import tasks

        return tasks.report(exp)

    exp = resolve()
    feats = features(exp, validate(exp, data(exp)))
    trained = train.partial(exp=exp).expand(family=families(exp, feats))
    gate_result = gate(exp, register(exp, trained))
    skipped = no_canary(exp, gate_result)
    dep = deploy_canary(exp)
    route_gate(gate_result) >> [dep, skipped]
    decision = decide(exp, canary(exp, dep))
    promoted, rolled_back = promote(exp, decision, dep), rollback(exp, decision, dep)
    route_decision(decision) >> [promoted, rolled_back]
    teardown = cleanup(exp, dep).as_teardown(setups=dep)
    [promoted, rolled_back] >> teardown
    [promoted, rolled_back, skipped, teardown] >> report(exp)


ab_experiment()
