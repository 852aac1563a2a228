"""Teardown: detach from the endpoint, stop only what the experiment started, keep logs/results.

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
    """Detach from the endpoint and stop what this experiment started; idempotent.

    The endpoint itself keeps serving the champion unless this experiment started it. A
    per-experiment router (``abx deploy`` of older runs, ``abx serve``) recorded for this
    experiment id is stopped as before.
    """
    from pipeline_components.deploy import Deployment, get_backend
    from pipeline_components.experiment.attach import detach

    recorded = dict(deployment or read_state(cfg, "deployment") or {})
    endpoint = detach(cfg, recorded)  # also after a deploy that failed half-way
    backend = get_backend(cfg.serving.backend)
    found = list(backend.find(cfg.experiment.id, cfg))
    if recorded.get("url") and recorded.get("pid") and not recorded.get("endpoint"):
        dep = Deployment.from_dict(recorded)
        if backend.alive(dep) and all(d.pid != dep.pid for d in found):
            found.append(dep)
    stopped = [{"url": u} for u in endpoint.get("stopped_endpoint", [])]
    for dep in found:
        backend.stop(dep)  # graceful: the router's writer flushes before it exits
        stopped.append({"pid": dep.pid, "port": dep.port, "url": dep.url})
    leftovers = [d.pid for d in backend.find(cfg.experiment.id, cfg)]
    if endpoint.get("stopped_endpoint"):
        leftovers += [d.pid for d in backend.find_endpoint(cfg)]
    result = {"experiment_id": cfg.experiment.id, "stopped": stopped, "leftovers": leftovers,
              "endpoint": endpoint, "at": time.time(), "kept": str(cfg.experiment_dir)}
    write_state(cfg, "cleanup", result)
    return result
