"""An experiment on the long-lived endpoint: attach, promote or reject, detach.

* ``attach``: find the endpoint (``endpoint.name``); if no replica is alive, start it (and
  remember that this experiment did); attach the experiment (one at a time); load the challenger
  (the gate's version, pinned) at weight 0 and wait until every replica routes it. A challenger
  that cannot load leaves the endpoint as it was and fails the task with the replica's reason.
* ``promote_on_endpoint``: the loaded challenger becomes the endpoint's champion in place.
* ``reject_on_endpoint``: unload this experiment's challenger; the champion serves everyone.
* ``detach`` (teardown, idempotent): unload what this experiment added, detach it, and stop the
  endpoint only if this experiment started it. Nothing else is ever stopped.
"""

from __future__ import annotations

import time
from typing import Any

from pipeline_components.config import Config
from pipeline_components.errors import DeploymentError
from pipeline_components.experiment.state import read_state, write_state
from pipeline_components.serving import operations as ops
from pipeline_components.serving.routing import CHAMPION

CHALLENGER = "challenger"


def _backend(cfg: Config) -> Any:
    from pipeline_components.deploy import get_backend

    return get_backend(cfg.serving.backend)


def _urls(cfg: Config) -> list[str]:
    return [r["url"] for r in ops.live_replicas(cfg)]


def attach(cfg: Config) -> dict[str, Any]:
    """Attach ``cfg.experiment.id`` with its challenger at weight 0; returns the deployment."""
    exp, name = cfg.experiment.id, cfg.endpoint.name
    stored = read_state(cfg, "deployment") or {}
    started = bool(stored.get("started_endpoint"))
    ops.ensure_endpoint(cfg, exp)
    if not _urls(cfg):
        deps = _backend(cfg).start_endpoint(cfg)
        started = True
        write_state(cfg, "deployment", {"endpoint": name, "started_endpoint": True,
                                        "url": deps[0].url, "pids": [d.pid for d in deps]})
    control = ops.open_control(cfg)
    control.attach(name, exp, cfg.salt)
    gate = read_state(cfg, "gate") or {}
    version = gate.get("challenger")
    if not version:
        raise DeploymentError(f"experiment {exp!r}: the gate recorded no challenger version")
    state = ops.pin(cfg, CHALLENGER, f"models:/{cfg.registry.model_name}/{version}", exp)
    since = ops.last_event_id(control, name)
    control.load(name, state, exp)
    try:
        ops.wait_ready(cfg, CHALLENGER, state.pinned_uri, since)
    except DeploymentError:
        detach(cfg)
        raise
    snap = control.snapshot(name)
    urls = _urls(cfg)
    out = {"endpoint": name, "url": urls[0], "urls": urls, "started_endpoint": started,
           "pids": [r["pid"] for r in ops.live_replicas(cfg)], "experiment_id": exp,
           "challenger": state.pinned_uri, "challenger_version": state.model_version,
           "endpoint_champion": snap.variants[CHAMPION].model_version,
           "gate_champion": gate.get("champion"), "at": time.time()}
    write_state(cfg, "deployment", out)
    return out


def promote_on_endpoint(cfg: Config) -> dict[str, Any]:
    """Swap the endpoint's champion for this experiment's challenger (idempotent)."""
    return ops.promote(cfg, CHALLENGER, cfg.experiment.id)


def reject_on_endpoint(cfg: Config, reason: str) -> dict[str, Any]:
    """Unload this experiment's challenger (only if this experiment loaded it)."""
    control = ops.open_control(cfg)
    if not control.exists(cfg.endpoint.name):
        return {"unloaded": False}
    v = control.snapshot(cfg.endpoint.name).variants.get(CHALLENGER)
    if v is None or v.added_by != cfg.experiment.id:
        return {"unloaded": False}
    return ops.unload(cfg, CHALLENGER, cfg.experiment.id, reason[:500])


def detach(cfg: Config, deployment: dict[str, Any] | None = None) -> dict[str, Any]:
    """Teardown: unload this experiment's variants, detach it, stop only what it started."""
    from pipeline_components.experiment import traffic

    canary = read_state(cfg, "canary") or {}
    if (canary.get("current") or {}).get("traffic"):
        traffic.stop(canary["current"]["traffic"])
    recorded = deployment or read_state(cfg, "deployment") or {}
    control = ops.open_control(cfg)
    out: dict[str, Any] = {"endpoint": cfg.endpoint.name, "detached": False, "unloaded": []}
    if control.exists(cfg.endpoint.name):
        out.update(control.detach(cfg.endpoint.name, cfg.experiment.id, reason="cleanup"))
        try:
            ops.wait_applied(cfg, control.version(cfg.endpoint.name))
        except DeploymentError:
            pass  # a replica that is gone applies it when it comes back (state is stored)
    stopped = []
    if recorded.get("started_endpoint"):
        stopped = [d.url for d in _backend(cfg).stop_endpoint(cfg)]
    out["stopped_endpoint"] = stopped
    return out
