"""Endpoint operations shared by the CLI, the admin API and the experiment: all go through the
control state, so they reach every replica, and each can wait until every live replica applied it.

Model URIs are pinned here, once, before anything is stored (``models:/m@challenger`` ->
``models:/m/7``), so every replica loads the same version and a moving alias never changes what
an endpoint serves; only ``promote`` changes the champion.
"""

from __future__ import annotations

import time
from typing import Any

from pipeline_components.config import Config
from pipeline_components.errors import DeploymentError, RegistryError
from pipeline_components.serving.control import (
    ControlStore,
    VariantState,
    make_control_engine,
)
from pipeline_components.serving.routing import CHAMPION

_STORES: dict[str, ControlStore] = {}


def open_control(cfg: Config) -> ControlStore:
    """The control store of ``cfg`` (one engine per URL and process)."""
    url = cfg.control_url
    if url not in _STORES:
        _STORES[url] = ControlStore(make_control_engine(url))
    return _STORES[url]


def pin(cfg: Config, name: str, uri: str, actor: str) -> VariantState:
    """Resolve ``uri`` to a pinned model version (RegistryError naming the URI if it is absent)."""
    if uri.startswith(("http://", "https://")):
        return VariantState(name, uri, uri, uri, 0.0, actor)
    from mlflow.tracking import MlflowClient

    from pipeline_components.serving.variants import resolve_uri
    from pipeline_components.tracking import configure_mlflow

    configure_mlflow(cfg)
    pinned, version = resolve_uri(uri, MlflowClient())
    if pinned.startswith("models:/") and "@" not in pinned:
        model, _, ver = pinned[len("models:/"):].partition("/")
        try:
            MlflowClient().get_model_version(model, ver)
        except Exception as exc:
            raise RegistryError(f"variant {name!r}: {uri!r} is not in the registry: {exc}"
                                ) from exc
    return VariantState(name, uri, pinned, version, 0.0, actor)


def ensure_endpoint(cfg: Config, actor: str) -> bool:
    """Create the endpoint serving ``models:/NAME@champion`` (pinned) if it does not exist."""
    control = open_control(cfg)
    if control.exists(cfg.endpoint.name):
        return False
    champ = pin(cfg, CHAMPION, f"models:/{cfg.registry.model_name}@champion", actor)
    return control.create(cfg.endpoint.name, champ, cfg.endpoint.name, actor)


def live_replicas(cfg: Config) -> list[dict[str, Any]]:
    return open_control(cfg).replicas(cfg.endpoint.name, cfg.endpoint.replica_timeout_s)


def wait_applied(cfg: Config, version: int | None, timeout_s: float = 10.0) -> float:
    """Wait until every live replica applied ``version``; returns seconds waited."""
    t0 = time.monotonic()
    if version is None:
        return 0.0
    while time.monotonic() - t0 < timeout_s:
        reps = live_replicas(cfg)
        if all(int(r["applied_version"]) >= version for r in reps):
            return time.monotonic() - t0
        time.sleep(0.05)
    lagging = [r["url"] for r in live_replicas(cfg) if int(r["applied_version"]) < version]
    raise DeploymentError(f"endpoint {cfg.endpoint.name!r}: replicas {lagging} did not apply "
                          f"control version {version} within {timeout_s:.0f} s")


def _failure(control: ControlStore, cfg: Config, variant: str, pinned: str,
             since: int) -> str | None:
    for e in control.events(cfg.endpoint.name, since_id=since, limit=1000):
        d = e.get("detail") or {}
        if e["kind"] == "load_failed" and d.get("variant") == variant \
                and d.get("pinned_uri") == pinned:
            return f"replica {d.get('replica')}: {d.get('reason')}"
    return None


def wait_ready(cfg: Config, variant: str, pinned: str, since_event: int,
               timeout_s: float | None = None) -> None:
    """Wait until every live replica routes ``variant`` at ``pinned``.

    Raises:
        DeploymentError: a replica could not load it (the reason it recorded), or timeout.
    """
    control = open_control(cfg)
    timeout = cfg.endpoint.load_timeout_s if timeout_s is None else timeout_s
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        why = _failure(control, cfg, variant, pinned, since_event)
        if why:
            raise DeploymentError(f"endpoint {cfg.endpoint.name!r}: loading {variant!r} "
                                  f"({pinned}) failed, the endpoint is unchanged: {why}")
        reps = live_replicas(cfg)
        if reps and all((r.get("ready") or {}).get(variant) == pinned for r in reps):
            return
        time.sleep(0.1)
    raise DeploymentError(f"endpoint {cfg.endpoint.name!r}: {variant!r} ({pinned}) not ready on "
                          f"every replica after {timeout:.0f} s (endpoint.load_timeout_s)")


def last_event_id(control: ControlStore, name: str) -> int:
    got = control.events(name, limit=1)
    return int(got[-1]["id"]) if got else 0


def load(cfg: Config, variant: str, uri: str, actor: str, *, wait: bool = True,
         weight: float | None = None) -> dict[str, Any]:
    """Load ``uri`` as ``variant`` on every replica (weight 0 until ``weight`` is given)."""
    control = open_control(cfg)
    state = pin(cfg, variant, uri, actor)
    since = last_event_id(control, cfg.endpoint.name)
    version = control.load(cfg.endpoint.name, state, actor)
    if wait and live_replicas(cfg):
        wait_ready(cfg, variant, state.pinned_uri, since)
    if weight is not None:
        version = set_weights(cfg, {variant: weight}, actor)
    return {"variant": variant, "pinned_uri": state.pinned_uri,
            "model_version": state.model_version, "control_version": version}


def unload(cfg: Config, variant: str, actor: str, reason: str = "") -> dict[str, Any]:
    version = open_control(cfg).unload(cfg.endpoint.name, variant, actor, reason)
    waited = wait_applied(cfg, version)
    return {"variant": variant, "unloaded": version is not None, "control_version": version,
            "applied_in_s": round(waited, 3)}


def set_weights(cfg: Config, weights: dict[str, float], actor: str,
                reset_breaker: bool = False) -> int:
    try:
        version = open_control(cfg).set_weights(cfg.endpoint.name, weights, actor,
                                                reset_breaker=reset_breaker)
    except PermissionError as exc:
        raise DeploymentError(f"endpoint {cfg.endpoint.name!r}: {exc}") from None
    wait_applied(cfg, version)
    return version


def promote(cfg: Config, variant: str, actor: str) -> dict[str, Any]:
    version = open_control(cfg).promote(cfg.endpoint.name, variant, actor)
    wait_applied(cfg, version)
    snap = open_control(cfg).snapshot(cfg.endpoint.name)
    return {"promoted": version is not None, "control_version": version,
            "champion": snap.variants[CHAMPION].model_version}


def rollback(cfg: Config, actor: str, reason: str) -> int:
    """All traffic to the champion (the other variants stay loaded at weight 0)."""
    snap = open_control(cfg).snapshot(cfg.endpoint.name)
    weights = {n: float(n == CHAMPION) for n in snap.variants}
    version = open_control(cfg).set_weights(cfg.endpoint.name, weights, actor,
                                            reset_breaker=False, kind="rollback")
    wait_applied(cfg, version)
    return version


def status(cfg: Config) -> dict[str, Any]:
    control = open_control(cfg)
    snap = control.snapshot(cfg.endpoint.name)
    now = time.time()
    reps = [{**r, "alive": now - float(r["heartbeat_at"]) <= cfg.endpoint.replica_timeout_s,
             "lag_versions": snap.version - int(r["applied_version"])}
            for r in control.replicas(cfg.endpoint.name)]
    return {**snap.to_dict(), "replicas": reps}
