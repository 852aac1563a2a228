"""The whole experiment without Airflow (``abx run``): the DAG's tasks, in order, in one process.

Same entry points as the DAG (``experiment.tasks``), same branches, and the same guarantee: the
cleanup runs in a ``finally`` block, i.e. even when a step failed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pipeline_components.experiment import tasks

Echo = Callable[[str], None]


def run_experiment(conf: Mapping[str, Any], echo: Echo = print) -> dict[str, Any]:
    """Run every stage for ``conf``; returns the report result (decision, champion, paths)."""
    for name, step in (("data", tasks.data), ("validate", tasks.validate),
                       ("features", tasks.features)):
        echo(f"[{name}] {_short(step(conf))}")
    results = []
    for family in tasks.families(conf):
        results.append(tasks.train(conf, family))
        echo(f"[train:{family}] {_short(results[-1])}")
    registered = tasks.register(conf, results)
    gate = tasks.gate(conf, registered)
    echo(f"[register] v{registered.get('version')}  [gate] {gate.get('reason')}")
    if tasks.route_after_gate(gate) == "no_canary":
        echo(f"[no_canary] {_short(tasks.no_canary(conf, gate))}")
        return tasks.report(conf)
    dep: dict[str, Any] = {}
    try:
        dep = tasks.deploy(conf)
        echo(f"[deploy] router {dep['url']} (pid {dep['pid']})")
        decision = tasks.decide(conf, tasks.canary(conf, dep))
        echo(f"[decide] {decision['action']}")
        if tasks.route_decision(decision) == "promote":
            echo(f"[promote] {_short(tasks.promote(conf, decision, dep))}")
        else:
            echo(f"[rollback] {_short(tasks.rollback(conf, decision, dep))}")
    finally:
        echo(f"[cleanup] {_short(tasks.cleanup(conf, dep or None))}")
    return tasks.report(conf)


def _short(obj: Any, limit: int = 160) -> str:
    text = str({k: v for k, v in obj.items() if not isinstance(v, dict | list)}
               if isinstance(obj, Mapping) else obj)
    return text if len(text) <= limit else text[: limit - 3] + "..."
