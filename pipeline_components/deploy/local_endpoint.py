"""Endpoint replicas as local processes (``abx endpoint serve``), one per port.

State lives under ``<state_dir>/endpoints/<name>/``: the effective params, one log and one
``replica-<i>.json`` (the ``Deployment``) per replica. The control state itself is in the store;
these files only say which local processes to stop. Another backend (containers) provides the
same three methods.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import yaml

from pipeline_components.config import Config
from pipeline_components.deploy.base import Deployment, replica_count
from pipeline_components.errors import DeploymentError


def endpoint_files(cfg: Config) -> Path:
    from pipeline_components.serving.keys import endpoint_dir

    return endpoint_dir(cfg)


class LocalEndpointMixin:
    """``start_endpoint`` / ``find_endpoint`` / ``stop_endpoint`` for the local backend."""

    name: str
    _spawn: Callable[..., Deployment]

    def start_endpoint(self, cfg: Config, replicas: int | None = None,
                       timeout_s: float = 180.0) -> list[Deployment]:
        """Start ``replicas`` processes (default ``endpoint.replicas``); idempotent when up."""
        from pipeline_components.deploy.local import free_port, router_params
        from pipeline_components.serving.keys import secret_env

        live = self.find_endpoint(cfg)
        if live:
            return live
        n = replica_count(cfg, replicas)
        folder = endpoint_files(cfg)
        folder.mkdir(parents=True, exist_ok=True)
        params = folder / "params.yaml"
        raw = router_params(cfg)  # secrets travel by environment, never in a file
        raw["endpoint"]["client_key"] = None
        params.write_text(yaml.safe_dump(raw, sort_keys=False))
        env = secret_env(cfg)  # the endpoint's client key too
        host = cfg.endpoint.host
        deps = []
        for i in range(n):
            port = cfg.endpoint.port + i if cfg.endpoint.port else free_port(host)
            dep = self._spawn(cfg, ["endpoint", "serve", "--params", str(params), "--host", host,
                                    "--port", str(port)], folder / f"replica-{i}.log",
                              f"endpoint:{cfg.endpoint.name}", host, port, env)
            (folder / f"replica-{i}.json").write_text(json.dumps(dep.to_dict(), indent=2))
            deps.append(dep)
        try:
            for dep in deps:
                self.health_wait(dep, timeout_s)  # type: ignore[attr-defined]
        except DeploymentError:
            self.stop_endpoint(cfg)
            raise
        return deps

    def find_endpoint(self, cfg: Config) -> list[Deployment]:
        """The live local replicas of ``endpoint.name`` (stale files are removed)."""
        out = []
        for state in sorted(endpoint_files(cfg).glob("replica-*.json")):
            try:
                dep = Deployment.from_dict(json.loads(state.read_text()))
            except (OSError, ValueError, TypeError):
                continue
            if self.alive(dep):  # type: ignore[attr-defined]
                out.append(dep)
            else:
                state.unlink(missing_ok=True)
        return out

    def stop_endpoint(self, cfg: Config, timeout_s: float | None = None) -> list[Deployment]:
        """Stop every local replica gracefully (in-flight requests finish, logs drain)."""
        found = self.find_endpoint(cfg)
        for dep in found:
            self.stop(dep, timeout_s)  # type: ignore[attr-defined]
        for state in endpoint_files(cfg).glob("replica-*.json"):
            state.unlink(missing_ok=True)
        return found
