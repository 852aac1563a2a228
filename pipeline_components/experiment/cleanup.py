"""Teardown: stop this experiment's router(s), free ports and pid files, keep logs and results.

Runs as an Airflow teardown task, so it runs even when a step before it failed, and it must be
safe to run any number of times: it stops what ``deploy`` recorded *and* whatever the backend still
finds for the experiment id (a router a crashed task left behind). Logs, the prediction log and
every ``*.json`` result stay where they are: the report and any post-mortem need them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from pipeline_components.config import Config
from pipeline_components.experiment.state import read_state, write_state


def cleanup(cfg: Config, deployment: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Stop every router of ``cfg.experiment.id``; idempotent. Returns what was stopped."""
    from pipeline_components.deploy import Deployment, get_backend

    backend = get_backend(cfg.serving.backend)
    found = list(backend.find(cfg.experiment.id, cfg))
    recorded = deployment or read_state(cfg, "deployment")
    if recorded and recorded.get("url"):
        dep = Deployment.from_dict(dict(recorded))
        if backend.alive(dep) and all(d.pid != dep.pid for d in found):
            found.append(dep)
    stopped = []
    for dep in found:
        backend.stop(dep)  # graceful: the router's writer flushes before it exits
        stopped.append({"pid": dep.pid, "port": dep.port, "url": dep.url})
    leftovers = [d.pid for d in backend.find(cfg.experiment.id, cfg)]
    result = {"experiment_id": cfg.experiment.id, "stopped": stopped, "leftovers": leftovers,
              "at": time.time(), "kept": str(cfg.experiment_dir)}
    write_state(cfg, "cleanup", result)
    return result
