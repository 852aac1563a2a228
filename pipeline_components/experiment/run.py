"""The whole experiment without Airflow (``abx run``, ``dvc repro``): ``stages.STEPS`` in order.

The same steps as the DAG (``experiment.tasks``, each prints its ``[abx] step: ...`` line), with
Airflow's rules for what runs: a branch skips the steps it did not choose, a step is skipped when
a step it needs was skipped (``none_failed_min_one_success``: when all were), and a teardown runs
whenever its setup started, even when a later step failed. Sensors call their waiting function.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pipeline_components.experiment import tasks
from pipeline_components.experiment.config import config_for
from pipeline_components.experiment.state import read_state
from pipeline_components.stages import STEPS, Step, stage


def run_steps(conf: Mapping[str, Any], steps: Iterable[Step] = STEPS,
              given: Mapping[str, Any] | None = None, funcs: Any = tasks) -> dict[str, Any]:
    """Run ``steps`` in order for ``conf``; returns each run step's result by name.

    ``given``: results of steps that ran before (e.g. in an earlier ``dvc repro`` stage).
    ``funcs``: where the steps' functions live (``experiment.tasks``; tests pass their own).
    """
    todo = list(steps)
    done: dict[str, Any] = dict(given or {})
    skipped: set[str] = set()
    started: set[str] = set()
    try:
        for st in todo:
            if st.name in skipped or _skips(st, skipped, todo):
                skipped.add(st.name)
                continue
            started.add(st.name)
            done[st.name] = _call(st, conf, done, funcs)
            if st.kind == "branch":
                skipped |= {s.name for s in todo if st.name in s.after and s.name != done[st.name]}
    except BaseException:
        for st in todo:  # teardowns whose setup started, then the failure goes on
            if st.kind == "teardown" and st.name not in started and started & set(st.inputs):
                _call(st, conf, done, funcs)
        raise
    return done


def _skips(st: Step, skipped: set[str], todo: list[Step]) -> bool:
    """Airflow's trigger rules, as far as the steps use them (upstream outside ``todo`` ran)."""
    if st.kind == "teardown":
        kinds = {s.name: s.kind for s in todo}
        setups = [n for n in st.inputs if kinds.get(n) == "setup"]
        return bool(setups) and all(n in skipped for n in setups)
    hit = [n in skipped for n in st.upstream]
    if st.trigger_rule == "none_failed_min_one_success":
        return bool(hit) and all(hit)
    return any(hit)


def _call(st: Step, conf: Mapping[str, Any], done: Mapping[str, Any], funcs: Any) -> Any:
    fn = getattr(funcs, st.func)
    if st.kind == "branch":
        return fn(*(done[n] for n in st.inputs))
    if st.kind == "teardown":  # its setup may have failed: then there is nothing recorded
        return fn(conf, *(done.get(n) or None for n in st.inputs))
    args = [done[n] for n in st.inputs]
    if st.map_over:
        return [fn(conf, *args, **{st.map_arg: item}) for item in done[st.map_over]]
    return fn(conf, *args)


def canary_stage(conf: Mapping[str, Any]) -> dict[str, Any]:
    """The ``dvc repro`` canary stage (``abx canary --deploy``): its steps after a stored gate.

    Gate branch, then no_canary, or deploy + canary + decide + cleanup; promote/rollback are the
    decide stage's. Returns the decision (or the no-canary outcome).
    """
    cfg = config_for(conf)
    gate = read_state(cfg, "gate") or tasks.gate(conf, read_state(cfg, "register") or {})
    picked = [s for s in STEPS if s.name in stage("canary").steps]
    done = run_steps(conf, picked, given={"gate": gate})
    return done.get("decide") or done["no_canary"]


def run_experiment(conf: Mapping[str, Any]) -> dict[str, Any]:
    """Run every step for ``conf``; returns the report result (decision, champion, paths)."""
    return run_steps(conf)["report"]
