"""The ``local`` backend: the router as a managed ``abx serve`` subprocess.

State lives under ``cfg.experiment_dir / "router"``: the effective params the router was started
with, its log, a pidfile and ``state.json`` (the ``Deployment``). ``find`` reads them back, so a
crashed run's leftover router can be found by experiment id and stopped.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import yaml

from pipeline_components.config import Config
from pipeline_components.deploy.base import Deployment, DeploymentBackend
from pipeline_components.deploy.local_endpoint import LocalEndpointMixin
from pipeline_components.errors import DeploymentError
from pipeline_components.fileio import write_json

_ENTRY = "from pipeline_components.cli import main; main()"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def router_dir(cfg_or_state: Config | Path, experiment_id: str | None = None) -> Path:
    if isinstance(cfg_or_state, Config):
        return (cfg_or_state.experiment_dir / "router").resolve()
    return (Path(cfg_or_state) / "experiments" / str(experiment_id) / "router").resolve()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:  # a zombie or a reused pid is not our router
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
        return "serve" in Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return True


def router_params(cfg: Config) -> dict:
    """The config for the router's params file, without its secrets (they go by environment)."""
    raw = cfg.model_dump(mode="json")
    raw["serving"]["admin_token"] = raw["serving"]["qa_token"] = None
    if "endpoint" in raw:
        raw["endpoint"]["client_key"] = None
    return raw


def secret_env(cfg: Config) -> dict[str, str]:
    """ABX_ADMIN_TOKEN / ABX_QA_TOKEN / ABX_CLIENT_KEY for the router, from the config's secrets."""
    env = {}
    for section, key, var in (("serving", "admin_token", "ABX_ADMIN_TOKEN"),
                              ("serving", "qa_token", "ABX_QA_TOKEN"),
                              ("endpoint", "client_key", "ABX_CLIENT_KEY")):
        secret = getattr(getattr(cfg, section, None), key, None)
        if secret is not None:
            env[var] = secret.get_secret_value()
    return env


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (0600, also when it existed)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


class LocalBackend(LocalEndpointMixin, DeploymentBackend):
    """Start/stop/find routers as local subprocesses."""

    name = "local"

    def __init__(self, state_dir: Path | None = None):
        self.state_dir = state_dir
        self._procs: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, cfg: Config, variants: Mapping[str, str] | None = None,
              timeout_s: float = 120.0) -> Deployment:
        """Stop leftovers of this experiment, start ``abx serve``, wait until ready."""
        self.state_dir = cfg.state_dir
        for old in self.find(cfg.experiment.id, cfg):
            self.stop(old)
        rdir = router_dir(cfg)
        rdir.mkdir(parents=True, exist_ok=True)
        host = cfg.serving.host
        port = cfg.serving.port or free_port(host)
        params = rdir / "params.yaml"
        write_private(params, yaml.safe_dump(router_params(cfg), sort_keys=False))
        args = ["serve", "--params", str(params), "--host", host, "--port", str(port)]
        for name, uri in (variants or {}).items():
            args += ["--variant", f"{name}={uri}"]
        dep = self._spawn(cfg, args, rdir / "router.log", cfg.experiment.id, host, port)
        (rdir / "router.pid").write_text(str(dep.pid))
        write_json(rdir / "state.json", dep.to_dict())
        try:
            self.health_wait(dep, timeout_s)
        except DeploymentError:
            self.stop(dep)
            raise
        return dep

    def _spawn(self, cfg: Config, args: list[str], log_path: Path, experiment_id: str,
               host: str, port: int, env: Mapping[str, str] | None = None) -> Deployment:
        """Start ``abx ARGS`` in its own session (a SIGINT to the caller's group leaves it
        alone), output appended to ``log_path``, secrets by environment; not yet ready."""
        cmd = [sys.executable, "-c", _ENTRY, *args]
        full_env = {**os.environ, "OMP_NUM_THREADS": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
                    "PYTHONUNBUFFERED": "1", **secret_env(cfg), **(env or {})}
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env,
                                    start_new_session=True)
        self._procs[proc.pid] = proc
        url_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return Deployment(url=f"http://{url_host}:{port}", pid=proc.pid,
                          experiment_id=experiment_id, port=port, backend=self.name, host=host,
                          log_path=str(log_path), started_at=time.time(),
                          grace_s=cfg.serving.shutdown_grace_s)

    def alive(self, dep: Deployment) -> bool:
        proc = self._procs.get(dep.pid)
        if proc is not None:
            return proc.poll() is None
        return _pid_alive(dep.pid)

    def log_tail(self, dep: Deployment, n: int = 20) -> str:
        try:
            return "\n".join(Path(dep.log_path).read_text().splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, dep: Deployment, timeout_s: float | None = None) -> None:
        """SIGTERM (uvicorn drains requests, the writer flushes), SIGKILL after ``timeout_s``.

        The default is ``dep.grace_s`` (``serving.shutdown_grace_s``), the same budget the router
        splits between in-flight requests and its log drain (serving.app.shutdown_budget), so a
        drain that is still within its deadline is never killed.
        """
        if self.alive(dep):
            os.kill(dep.pid, signal.SIGTERM)
            deadline = time.monotonic() + (dep.grace_s if timeout_s is None else timeout_s)
            while self.alive(dep) and time.monotonic() < deadline:
                time.sleep(0.05)
            if self.alive(dep):
                os.kill(dep.pid, signal.SIGKILL)
        proc = self._procs.pop(dep.pid, None)
        if proc is not None:
            proc.wait(5)
        self._forget(dep)

    def _forget(self, dep: Deployment) -> None:
        rdir = Path(dep.log_path).parent if dep.log_path else None
        if rdir is None:
            return
        state = rdir / "state.json"
        try:
            if json.loads(state.read_text()).get("pid") == dep.pid:
                state.unlink()
                (rdir / "router.pid").unlink(missing_ok=True)
        except (OSError, ValueError):
            pass

    def find(self, experiment_id: str, cfg: Config | None = None) -> list[Deployment]:
        """The live router recorded for ``experiment_id`` (stale state files are removed)."""
        state_dir = cfg.state_dir if cfg is not None else (self.state_dir or Path(".abx"))
        state = router_dir(Path(state_dir), experiment_id) / "state.json"
        if not state.is_file():
            return []
        try:
            dep = Deployment.from_dict(json.loads(state.read_text()))
        except (OSError, ValueError, TypeError):
            return []
        if self.alive(dep):
            return [dep]
        self._forget(dep)
        return []
