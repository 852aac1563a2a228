"""Endpoint replicas as local processes (``abx endpoint serve``), one per port.

State lives under ``<state_dir>/endpoints/<name>/``: the effective params, one log and one
``replica-<i>.json`` (the ``Deployment``) per replica. The control state itself is in the store;
these files only say which local processes to stop. Another backend (containers) provides the
same three methods.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from pipeline_components.config import Config
from pipeline_components.deploy.base import Deployment
from pipeline_components.errors import DeploymentError

_ENTRY = "from pipeline_components.cli import main; main()"


def endpoint_files(cfg: Config) -> Path:
    from pipeline_components.serving.keys import endpoint_dir

    return endpoint_dir(cfg)


class LocalEndpointMixin:
    """``start_endpoint`` / ``find_endpoint`` / ``stop_endpoint`` for the local backend."""

    name: str
    _procs: dict[int, subprocess.Popen[bytes]]

    def start_endpoint(self, cfg: Config, replicas: int | None = None,
                       timeout_s: float = 180.0) -> list[Deployment]:
        """Start ``replicas`` processes (default ``endpoint.replicas``); idempotent when up."""
        from pipeline_components.deploy.local import free_port, router_params
        from pipeline_components.deploy.local import secret_env as router_secrets
        from pipeline_components.serving.keys import secret_env

        live = self.find_endpoint(cfg)
        if live:
            return live
        n = replicas or cfg.endpoint.replicas
        if n > 1 and cfg.control_url.startswith("sqlite"):
            raise DeploymentError(f"endpoint.replicas={n}: several replicas need a shared "
                                  "PostgreSQL control store (endpoint.control_url / "
                                  "serving.store_url = postgresql://...)")
        folder = endpoint_files(cfg)
        folder.mkdir(parents=True, exist_ok=True)
        params = folder / "params.yaml"
        raw = router_params(cfg)  # secrets travel by environment, never in a file
        raw["endpoint"]["client_key"] = None
        params.write_text(yaml.safe_dump(raw, sort_keys=False))
        env = {**os.environ, **router_secrets(cfg), **secret_env(cfg), "OMP_NUM_THREADS": "1",
               "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONUNBUFFERED": "1"}
        host = cfg.endpoint.host
        deps = []
        for i in range(n):
            port = cfg.endpoint.port + i if cfg.endpoint.port else free_port(host)
            deps.append(self._spawn(cfg, folder, params, env, i, host, port))
        try:
            for dep in deps:
                self.health_wait(dep, timeout_s)  # type: ignore[attr-defined]
        except DeploymentError:
            self.stop_endpoint(cfg)
            raise
        return deps

    def _spawn(self, cfg: Config, folder: Path, params: Path, env: dict[str, str], i: int,
               host: str, port: int) -> Deployment:
        cmd = [sys.executable, "-c", _ENTRY, "endpoint", "serve", "--params", str(params),
               "--host", host, "--port", str(port)]
        log_path = folder / f"replica-{i}.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
        self._procs[proc.pid] = proc
        url_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        dep = Deployment(url=f"http://{url_host}:{port}", pid=proc.pid,
                         experiment_id=f"endpoint:{cfg.endpoint.name}", port=port,
                         backend=self.name, host=host, log_path=str(log_path),
                         started_at=time.time(), grace_s=cfg.serving.shutdown_grace_s)
        (folder / f"replica-{i}.json").write_text(json.dumps(dep.to_dict(), indent=2))
        return dep

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
