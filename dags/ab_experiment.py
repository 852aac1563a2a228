"""
### ab_experiment: train a challenger, canary it against the champion, promote or roll back

One DAG run is one experiment (its id is derived from the run id). The chain:

1. **data -> validate -> features**: generate/ingest, Great Expectations suite, seeded splits.
2. **train** (one mapped task per model family, in parallel) -> **register** the best (alias
   `challenger`; the very first run makes it `champion`) -> **gate** (offline, on the holdout).
3. **deploy_canary** (setup: attach to the long-lived endpoint, load the challenger at weight 0 on
   every replica) -> **canary** (a sensor in reschedule mode: ramps the challenger's weight step by
   step and waits for real traffic and outcomes, or for the simulator's when
   `canary.traffic: simulator`; stops early on a breaker event, SRM, a guardrail breach or a
   confident result) -> **decide** -> **promote** (registry alias + the endpoint's champion swapped
   in place) or **rollback** (challenger unloaded).
4. **cleanup** (teardown: detaches from the endpoint even when a step failed; stops it only if this
   run started it) -> **report** (HTML + Markdown, logged to MLflow).

The tasks and their order come from `pipeline_components/stages.py` (`STEPS`), the same
definition `abx run` walks and `dvc.yaml` is generated from; this file only wires it.

The trigger form overrides params.yaml for this run; empty fields keep the params.yaml value.
`overrides` takes any dotted key, e.g. `{"training.cv_folds": 2}`.

Schedule: `experiment.schedule` in params.yaml (or the `ABX_SCHEDULE` environment variable), a
cron expression in UTC; an empty value or `none` switches the nightly run off. Unpausing never
starts a run for a cron time that has already passed: the first scheduled run is the next one.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import yaml
from airflow.sdk import Asset, CronTriggerTimetable, Param, PokeReturnValue, dag, task

from pipeline_components.stages import STEPS, Step
from pipeline_components.stages import step as stage_step

F = TypeVar("F", bound=Callable[..., Any])

REPO = Path(__file__).resolve().parents[1]
PARAMS_PATH = Path(os.environ.get("ABX_PARAMS", REPO / "params.yaml"))


def _params_yaml() -> dict[str, Any]:
    """params.yaml read with yaml only (cheap), for the schedule and the form's hints."""
    try:
        return yaml.safe_load(PARAMS_PATH.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}


def schedule_from(value: Any) -> CronTriggerTimetable | None:
    """The DAG's schedule: a UTC cron string, or None (no nightly run) for empty/``none``.

    ``run_immediately=timedelta(0)``: unpausing (or deploying) the DAG never creates a run for a
    cron time already past, so the first run a user sees is the one they trigger from the form.
    """
    text = "" if value is None else str(value).strip()
    if text.lower() in ("", "none", "null", "off"):
        return None
    return CronTriggerTimetable(text, timezone="UTC", run_immediately=timedelta(0))


_P = _params_yaml()
SCHEDULE = schedule_from(os.environ.get("ABX_SCHEDULE", _P.get("experiment", {}).get("schedule")))
# How often the canary sensor looks at the log; between looks it holds no worker slot.
POKE_S = float(os.environ.get("ABX_CANARY_POKE_S")
               or _P.get("canary", {}).get("poke_interval_s") or 30)
# Airflow pools (created by scripts/scale-demo.sh): training and the canary each get their own
# slots, so a long training cannot starve a running canary of workers nor the other way round.
# Unset: Airflow's default_pool (dag.test, `abx run`).
POOLS = {"train": os.environ.get("ABX_POOL_TRAINING") or "default_pool",
         "deploy_canary": os.environ.get("ABX_POOL_CANARY") or "default_pool",
         "canary": os.environ.get("ABX_POOL_CANARY") or "default_pool"}
DATA_ASSET = Asset(name="abx_data_version", uri="abx://data/features")
CHAMPION_ASSET = Asset(name="abx_champion_model", uri="abx://registry/champion")
# Errors a retry cannot fix (bad config, bad data, a missing model, a refused promotion, an alias
# another experiment moved, injected faults): fail now. A registry outage
# (RegistryUnavailableError, a TrackingError) is retried.
FINAL_ERRORS = frozenset({"ConfigError", "DataError", "DataValidationError", "RegistryError",
                          "AliasConflictError", "InjectedFailure"})


def fail_fast(fn: F) -> F:
    """Turn non-retryable abx errors into the SDK's AirflowFailException (retries are for I/O)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if any(c.__name__ in FINAL_ERRORS for c in type(exc).__mro__):
                from airflow.sdk.exceptions import AirflowFailException

                raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc
            raise

    return wrapper  # type: ignore[return-value]


def _opt(kind: str, key: str, title: str, meaning: str, **extra: Any) -> Param:
    """An optional form field for params.yaml's ``key``: empty keeps the file's value."""
    section, _, leaf = key.partition(".")
    default = _P.get(section, {}).get(leaf)
    return Param(None, type=["null", kind], title=title,
                 description=f"{meaning} Empty: params.yaml's {key} ({default!r}).", **extra)


PARAMS = {
    "families": _opt("array", "training.families", "Model families",
                     "Candidate model families, one Optuna study each "
                     "(logreg, extra_trees, random_forest, hist_gbdt).", items={"type": "string"}),
    "n_trials": _opt("integer", "training.n_trials", "Trials per family",
                     "Optuna trials per model family (a count, shared by its workers).",
                     minimum=1),
    "canary_steps": _opt("array", "canary.steps", "Canary ramp (traffic shares)",
                         "The challenger's share of live traffic at each step: fractions in "
                         "(0, 1], increasing, e.g. [0.05, 0.25, 0.5] = 5%, 25%, 50%.",
                         items={"type": "number"}),
    "alpha": _opt("number", "analysis.alpha", "Significance level (alpha)",
                  "Accepted chance of promoting a challenger that is not better "
                  "(a probability, e.g. 0.05 = 5%).", exclusiveMinimum=0, maximum=0.5),
    "mde": _opt("number", "analysis.mde", "Minimum detectable effect",
                "Smallest lift of the primary metric worth detecting, in the metric's units "
                "(absolute: 0.02 = 2 percentage points of a rate).", exclusiveMinimum=0),
    "min_samples": _opt("integer", "canary.min_samples_per_step", "Users per canary step",
                        "Users with an outcome needed before a step is analysed (a count).",
                        minimum=1),
    "max_duration_s": _opt("number", "canary.max_duration_s", "Canary time budget (seconds)",
                           "Longest the whole canary may run, in seconds.", exclusiveMinimum=0),
    "rate_per_s": _opt("number", "simulator.rate_per_s", "Simulated traffic (requests/second)",
                       "Request rate of the traffic simulator, in requests per second.",
                       exclusiveMinimum=0),
    "experiment_id": Param(None, type=["null", "string"], title="Experiment id",
                           description="Keys every output folder and registry tag. Empty: "
                                       "derived from the run id (one experiment per run)."),
    "overrides": Param(None, type=["null", "object"], title="Other params.yaml keys",
                       description='Any params.yaml key as {"dotted.key": value}, e.g. '
                                   '{"training.cv_folds": 2}. Empty: none.'),
}


ASSETS = {"data": DATA_ASSET, "champion": CHAMPION_ASSET}


def step_task(step: Step) -> Any:
    """The Airflow task of one step of ``pipeline_components.stages``: its body is one call.

    Every task takes the run's conf (``exp``) and ``inputs``, the results of the steps it needs by
    name (XComs); a mapped step also gets ``item``. Non-retryable abx errors fail at once, except
    in the teardown, which retries whatever went wrong.
    """

    def body(exp: dict, inputs: dict[str, Any], item: Any = None) -> Any:
        from pipeline_components.experiment import tasks

        args = [inputs[name] for name in step.inputs]
        if step.kind == "branch":
            return getattr(tasks, step.func)(*args)
        if step.kind == "sensor":
            result = getattr(tasks, step.poke or step.func)(exp, *args)
            return PokeReturnValue(is_done=result is not None, xcom_value=result)
        extra = {step.map_arg: item} if step.map_over else {}
        return getattr(tasks, step.func)(exp, *args, **extra)

    body.__name__ = body.__qualname__ = step.name
    fn = body if step.kind == "teardown" else fail_fast(body)
    if step.kind == "branch":
        return task.branch(task_id=step.name)(fn)
    if step.kind == "sensor":
        return task.sensor(task_id=step.name, poke_interval=POKE_S, timeout=timedelta(days=30),
                           mode="reschedule", pool=POOLS.get(step.name, "default_pool"))(fn)
    return task(task_id=step.name, trigger_rule=step.trigger_rule,
                pool=POOLS.get(step.name, "default_pool"),
                outlets=[ASSETS[step.asset]] if step.asset else [],
                map_index_template="{{ task.op_kwargs['item'] }}" if step.map_over else None)(fn)


@dag(
    dag_id="ab_experiment",
    schedule=SCHEDULE,
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

    exp = resolve()
    out: dict[str, Any] = {}  # step name -> its task's output
    for step in STEPS:  # in order: every step's upstream is already wired
        make = step_task(step)
        inputs = {name: out[name] for name in step.inputs}
        if step.map_over:
            out[step.name] = make.partial(exp=exp, inputs=inputs).expand(item=out[step.map_over])
        else:
            out[step.name] = make(exp, inputs)
        if step.kind == "teardown":
            setups = [out[n] for n in step.inputs if stage_step(n).kind == "setup"]
            out[step.name] = out[step.name].as_teardown(setups=setups)
        for name in step.after:
            out[name] >> out[step.name]


ab_experiment()
