"""The whole experiment without Airflow (``abx run``, ``dvc repro``): the DAG's tasks in order.

Same entry points as the DAG (``experiment.tasks``, each prints its ``[abx] step: ...`` line),
same branches, and the same guarantee: the cleanup runs in a ``finally`` block, i.e. even when a
step failed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline_components.experiment import tasks
from pipeline_components.experiment.config import config_for
from pipeline_components.experiment.state import read_state, write_state


def canary_stage(conf: Mapping[str, Any], *, apply: bool = True) -> dict[str, Any]:
    """Gate branch + deploy + canary + decide (+ promote/rollback when ``apply``) + cleanup."""
    gate = read_state(config_for(conf), "gate")
    if gate is None:
        gate = tasks.gate(conf, read_state(config_for(conf), "register") or {})
    if tasks.route_after_gate(gate) == "no_canary":
        out = tasks.no_canary(conf, gate)
        cfg = config_for(conf)  # outputs exist either way (dvc stage outs)
        code = "BOOTSTRAP" if gate.get("bootstrap") else "OFFLINE_GATE"
        write_state(cfg, "canary", {"finished": True, "steps": [], "stopped": "no_canary",
                                    "decision": None})
        write_state(cfg, "decision", {"action": "none", "reasons": [
            {"code": code, "message": str(gate.get("reason")), "blocking": True}]})
        return out
    dep: dict[str, Any] = {}
    try:
        dep = tasks.deploy(conf)
        decision = tasks.decide(conf, tasks.canary(conf, dep))
        if not apply:
            return decision
        if tasks.route_decision(decision) == "promote":
            return tasks.promote(conf, decision, dep)
        return tasks.rollback(conf, decision, dep)
    finally:
        tasks.cleanup(conf, dep or None)


def run_experiment(conf: Mapping[str, Any]) -> dict[str, Any]:
    """Run every stage for ``conf``; returns the report result (decision, champion, paths)."""
    tasks.data(conf)
    tasks.validate(conf)
    tasks.features(conf)
    results = [tasks.train(conf, family) for family in tasks.families(conf)]
    tasks.gate(conf, tasks.register(conf, results))
    canary_stage(conf)
    return tasks.report(conf)
