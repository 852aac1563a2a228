"""The ``docker`` backend: replicas as containers of the endpoint image.

Two kinds of containers, told apart by the ``org.abx.role`` label:

* ``endpoint`` — the long-lived endpoint (docs/endpoint.md): ``endpoint.replicas`` containers of
  ``abx endpoint serve`` following one control store. This is what the experiment DAG attaches to
  (``start_endpoint`` / ``find_endpoint`` / ``stop_endpoint``).
* ``router`` — one experiment's own router (``abx serve``, ``start`` / ``find`` / ``stop``), kept
  for ``abx deploy`` and the benchmarks of the plain router.

Each replica is one container on the host network (the engine here has no bridge) serving one
port, with CPU/memory limits (``serving.docker``), a Docker health check on ``/readyz`` and labels
naming the endpoint, the experiment (for an endpoint: the one that started it), the state dir and
the deployment. The labels are the only way containers are found: nothing here touches a
container without abx's ``org.abx.managed-by`` label and this state dir's (and endpoint's or
experiment's) values.

Paths are the host's: the state dir (params, SQLite stores), the tracking store and each model's
artifacts are bind-mounted at the same absolute path, so every URI means the same inside and out.
"""

from __future__ import annotations

import math
import os
import re
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from pipeline_components.config import Config
from pipeline_components.deploy.base import Deployment, DeploymentBackend, replica_count
from pipeline_components.deploy.engine import MANAGED, docker_client, image_exists
from pipeline_components.deploy.local import (
    free_port,
    router_dir,
    router_params,
    secret_env,
    write_private,
)
from pipeline_components.deploy.mounts import endpoint_mounts, host_mounts
from pipeline_components.errors import DeploymentError
from pipeline_components.store import make_engine

L_EXP, L_ENDPOINT, L_STATE = "org.abx.experiment", "org.abx.endpoint", "org.abx.state-dir"
L_DEPLOY, L_REPLICA, L_PORT = "org.abx.deployment", "org.abx.replica", "org.abx.port"
L_GRACE, L_ROLE = "org.abx.grace-s", "org.abx.role"


def _scope(experiment_id: str, state_dir: Path) -> list[str]:
    """Label filter of one experiment's routers (never an endpoint's replicas)."""
    return [f"{MANAGED}=abx", f"{L_ROLE}=router", f"{L_EXP}={experiment_id}",
            f"{L_STATE}={state_dir.resolve()}"]


def endpoint_scope(cfg: Config) -> list[str]:
    """Label filter of the endpoint ``endpoint.name``'s replicas in this state dir."""
    return [f"{MANAGED}=abx", f"{L_ROLE}=endpoint", f"{L_ENDPOINT}={cfg.endpoint.name}",
            f"{L_STATE}={cfg.state_dir.resolve()}"]


def _labels(scope: list[str], **extra: str) -> dict[str, str]:
    out = dict(item.split("=", 1) for item in scope)
    out.update(extra)
    return out


def effective_params(cfg: Config) -> dict[str, Any]:
    """The config a container loads: every location made absolute (its cwd is not ours), no
    secrets."""
    raw = router_params(cfg)  # secrets stripped: they travel by environment
    raw["experiment"]["state_dir"] = str(cfg.state_dir.resolve())
    raw["tracking"]["tracking_uri"] = cfg.tracking_uri
    raw["serving"]["store_url"] = cfg.store_url
    if raw.get("endpoint", {}).get("control_url"):
        raw["endpoint"]["control_url"] = cfg.control_url
    raw.setdefault("endpoint", {})["client_key"] = None
    return raw


def _container_env(cfg: Config, *extra: Mapping[str, str]) -> dict[str, str]:
    """What a replica's process needs: quiet libraries, one OpenMP thread, the secrets (by
    environment, never in the params file)."""
    env = {"HOME": "/tmp", "OMP_NUM_THREADS": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
           "ABX_LOG_LEVEL": os.environ.get("ABX_LOG_LEVEL", "warning")}
    for var in ("ABX_ADMIN_TOKEN", "ABX_QA_TOKEN"):  # the config's secrets win, as locally
        if os.environ.get(var):
            env[var] = os.environ[var]
    env.update(secret_env(cfg))
    for more in extra:
        env.update(more)
    return env


class DockerBackend(DeploymentBackend):
    """Start/stop/find router replicas as containers (``serving.docker`` sets image and limits)."""

    name = "docker"

    def __init__(self, client: Any = None):
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = docker_client()
        return self._client

    # ------------------------------------------------------------------ start
    def start(self, cfg: Config, variants: Mapping[str, str] | None = None,
              timeout_s: float = 120.0) -> Deployment:
        """Stop leftovers of this experiment, start ``serving.docker.replicas`` containers, wait
        until each answers ``/readyz``; on any failure stop what was started and raise."""
        d = cfg.serving.docker
        self._require_image(cfg)
        for old in self.find(cfg.experiment.id, cfg):
            self.stop(old)
        rdir = router_dir(cfg)
        rdir.mkdir(parents=True, exist_ok=True)
        params = rdir / "params.yaml"
        write_private(params, yaml.safe_dump(effective_params(cfg), sort_keys=False))
        # Create the prediction store's tables once here: replicas starting together on a fresh
        # store would race on CREATE TABLE.
        make_engine(cfg.store_url).dispose()
        deployment_id = uuid.uuid4().hex[:12]
        replicas: list[dict[str, Any]] = []
        try:
            for i in range(d.replicas):
                replicas.append(self._run_replica(cfg, variants, params, deployment_id, i))
            dep = self._deployment(cfg, replicas, rdir)
            for r in replicas:
                self.health_wait(self._one(dep, r), timeout_s)
        except Exception:
            for r in replicas:
                self._remove(r["container"], rdir, save_logs=True)
            raise
        return dep

    def _require_image(self, cfg: Config) -> None:
        image = cfg.serving.docker.image
        if not image_exists(self.client, image):
            raise DeploymentError(f"serving.docker.image {image!r} is not on this engine; build "
                                  "it with `abx image build` (images are never pulled)")

    def _run_replica(self, cfg: Config, variants: Mapping[str, str] | None, params: Path,
                     deployment_id: str, i: int) -> dict[str, Any]:
        host = cfg.serving.host
        port = cfg.serving.port + i if cfg.serving.port else free_port(host)
        cmd = ["serve", "--params", str(params), "--host", host, "--port", str(port)]
        for name, uri in (variants or {}).items():
            cmd += ["--variant", f"{name}={uri}"]
        labels = _labels(_scope(cfg.experiment.id, cfg.state_dir),
                         **{L_ENDPOINT: cfg.registry.model_name, L_DEPLOY: deployment_id,
                            L_REPLICA: str(i), L_PORT: str(port),
                            L_GRACE: str(cfg.serving.shutdown_grace_s)})
        name = f"abx-{cfg.experiment.id}-{deployment_id}-{i}"
        return self._run_container(cfg, cmd, name, labels, _container_env(cfg),
                                   host_mounts(cfg, variants, params.parent), params.parent,
                                   host, port, i)

    def _run_container(self, cfg: Config, cmd: list[str], name: str, labels: dict[str, str],
                       env: dict[str, str], volumes: dict[str, dict[str, str]], workdir: Path,
                       host: str, port: int, i: int) -> dict[str, Any]:
        """One replica: host network, the host user, ``serving.docker`` limits, a health check
        on ``/readyz``; returns its ``{"url", "port", "container", "replica"}``."""
        d = cfg.serving.docker
        url = f"http://{_url_host(host)}:{port}"
        probe = f"import urllib.request as u; u.urlopen('{url}/readyz', timeout=3)"
        container = self.client.containers.run(
            d.image, cmd, name=re.sub(r"[^A-Za-z0-9_.-]", "-", name), detach=True,
            network_mode="host", labels=labels, environment=env, volumes=volumes,
            user=f"{os.getuid()}:{os.getgid()}", working_dir=str(workdir),
            nano_cpus=int(d.cpus * 1e9), mem_limit=d.memory, stop_signal="SIGTERM",
            healthcheck={"test": ["CMD", "python", "-c", probe], "interval": 10_000_000_000,
                         "timeout": 5_000_000_000, "retries": 3, "start_period": 60_000_000_000},
        )
        return {"url": url, "port": port, "container": container.id, "replica": i}

    def _deployment(self, cfg: Config, replicas: list[dict[str, Any]], rdir: Path) -> Deployment:
        first = replicas[0]
        return Deployment(url=first["url"], pid=self._pid(first["container"]),
                          experiment_id=cfg.experiment.id, port=int(first["port"]),
                          backend=self.name, host=cfg.serving.host,
                          log_path=str(rdir / "router.log"), started_at=time.time(),
                          grace_s=cfg.serving.shutdown_grace_s, container=first["container"],
                          replicas=replicas)

    @staticmethod
    def _one(dep: Deployment, replica: Mapping[str, Any]) -> Deployment:
        return Deployment.from_dict({**dep.to_dict(), "url": replica["url"],
                                     "port": replica["port"], "container": replica["container"],
                                     "replicas": [dict(replica)]})

    def _pid(self, container_id: str) -> int:
        try:
            return int(self.client.containers.get(container_id).attrs["State"]["Pid"] or 0)
        except Exception:
            return 0

    # ------------------------------------------------------------------ inspect
    def _container(self, container_id: str) -> Any:
        """The container if it exists *and* abx started it; None otherwise."""
        from docker.errors import NotFound

        try:
            c = self.client.containers.get(container_id)
        except NotFound:
            return None
        return c if c.labels.get(MANAGED) == "abx" else None

    def _containers(self, dep: Deployment) -> list[Any]:
        ids = [str(r["container"]) for r in dep.replicas]
        ids = ids or ([dep.container] if dep.container else [])
        return [c for c in (self._container(i) for i in ids) if c is not None]

    def alive(self, dep: Deployment) -> bool:
        """Every replica's container is running."""
        cs = self._containers(dep)
        expected = len(dep.replicas) or 1
        return len(cs) == expected and all(c.status == "running" for c in cs)

    def logs(self, dep: Deployment, tail: int | str = "all") -> str:
        """Every replica's output (stdout+stderr), headed by its container name."""
        out = []
        for c in self._containers(dep):
            text = c.logs(stdout=True, stderr=True, tail=tail).decode(errors="replace")
            out.append(f"==> {c.name} <==\n{text}")
        return "\n".join(out)

    def log_tail(self, dep: Deployment, n: int = 20) -> str:
        return self.logs(dep, tail=n)

    def find(self, experiment_id: str, cfg: Config | None = None) -> list[Deployment]:
        """Running deployments of ``experiment_id`` in this state dir, grouped by deployment."""
        state_dir = cfg.state_dir if cfg is not None else Path(".abx")
        found = self.client.containers.list(filters={"label": _scope(experiment_id, state_dir)})
        groups: dict[str, list[Any]] = {}
        for c in found:
            groups.setdefault(c.labels.get(L_DEPLOY, c.id), []).append(c)
        deps = []
        for cs in groups.values():
            cs.sort(key=lambda c: int(c.labels.get(L_REPLICA, 0)))
            host = "127.0.0.1"
            reps = [{"url": f"http://{host}:{c.labels[L_PORT]}", "port": int(c.labels[L_PORT]),
                     "container": c.id, "replica": int(c.labels.get(L_REPLICA, 0))} for c in cs]
            rdir = router_dir(Path(state_dir), experiment_id)
            deps.append(Deployment(url=reps[0]["url"], pid=int(cs[0].attrs["State"]["Pid"] or 0),
                                   experiment_id=experiment_id, port=reps[0]["port"],
                                   backend=self.name, log_path=str(rdir / "router.log"),
                                   grace_s=float(cs[0].labels.get(L_GRACE, 30.0)),
                                   container=cs[0].id, replicas=reps))
        return deps

    # ------------------------------------------------------------------ stop
    def stop(self, dep: Deployment, timeout_s: float | None = None) -> None:
        """SIGTERM every replica (the writer drains), SIGKILL after ``timeout_s`` (default
        ``dep.grace_s``, the router's own drain budget); keep each replica's log next to the
        params; remove the containers. Idempotent."""
        rdir = Path(dep.log_path).parent if dep.log_path else None
        grace = dep.grace_s if timeout_s is None else timeout_s
        for c in self._containers(dep):
            self._remove(c.id, rdir, save_logs=True, timeout_s=grace)

    def _remove(self, container_id: str, rdir: Path | None, save_logs: bool,
                timeout_s: float = 30.0) -> None:
        c = self._container(container_id)
        if c is None:
            return
        try:
            if c.status == "running":
                c.stop(timeout=max(1, math.ceil(timeout_s)))
            if save_logs and rdir is not None and rdir.is_dir():
                prefix = "replica" if c.labels.get(L_ROLE) == "endpoint" else "router"
                log = rdir / f"{prefix}-{c.labels.get(L_REPLICA, '0')}.log"
                log.write_bytes(c.logs(stdout=True, stderr=True))
            c.remove(force=True)
        except Exception as exc:  # already gone (a concurrent cleanup): nothing left to do
            from docker.errors import NotFound

            if not isinstance(exc, NotFound):
                raise


    # ------------------------------------------------------------------ the endpoint
    def start_endpoint(self, cfg: Config, replicas: int | None = None,
                       timeout_s: float = 180.0) -> list[Deployment]:
        """Start ``replicas`` containers of ``abx endpoint serve`` (default ``endpoint.replicas``)
        and wait until each answers ``/readyz``; idempotent when some are up. On any failure the
        containers started here are removed (their logs kept) and DeploymentError is raised."""
        from pipeline_components.serving.keys import endpoint_dir
        from pipeline_components.serving.keys import secret_env as endpoint_secrets
        from pipeline_components.serving.operations import open_control

        live = self.find_endpoint(cfg)
        if live:
            return live
        n = replica_count(cfg, replicas)
        self._require_image(cfg)
        folder = endpoint_dir(cfg)
        folder.mkdir(parents=True, exist_ok=True)
        self._remove_exited(cfg, folder)
        params = folder / "params.yaml"
        write_private(params, yaml.safe_dump(effective_params(cfg), sort_keys=False))
        # Tables first, here: replicas starting together on a fresh store race on CREATE TABLE.
        make_engine(cfg.store_url).dispose()
        open_control(cfg)
        env = _container_env(cfg, endpoint_secrets(cfg))
        volumes = endpoint_mounts(cfg, folder)
        deployment_id, host = uuid.uuid4().hex[:12], cfg.endpoint.host
        started: list[Deployment] = []
        try:
            for i in range(n):
                port = cfg.endpoint.port + i if cfg.endpoint.port else free_port(host)
                labels = _labels(endpoint_scope(cfg), **{
                    L_EXP: cfg.experiment.id, L_DEPLOY: deployment_id, L_REPLICA: str(i),
                    L_PORT: str(port), L_GRACE: str(cfg.serving.shutdown_grace_s)})
                url = f"http://{_url_host(host)}:{port}"
                rep = self._run_container(
                    cfg, ["endpoint", "serve", "--params", str(params), "--host", host,
                          "--port", str(port)],
                    f"abx-endpoint-{cfg.endpoint.name}-{deployment_id}-{i}", labels,
                    {**env, "ABX_REPLICA_URL": url}, volumes, folder, host, port, i)
                started.append(self._endpoint_replica(cfg, rep, folder))
            for dep in started:
                self.health_wait(dep, timeout_s)
        except Exception:
            for dep in started:
                self._remove(dep.container, folder, save_logs=True)
            raise
        return started

    def _endpoint_replica(self, cfg: Config, rep: Mapping[str, Any], folder: Path,
                          grace_s: float | None = None) -> Deployment:
        return Deployment(url=str(rep["url"]), pid=self._pid(str(rep["container"])),
                          experiment_id=f"endpoint:{cfg.endpoint.name}", port=int(rep["port"]),
                          backend=self.name, host=cfg.endpoint.host,
                          log_path=str(folder / f"replica-{rep['replica']}.log"),
                          started_at=time.time(),
                          grace_s=cfg.serving.shutdown_grace_s if grace_s is None else grace_s,
                          container=str(rep["container"]), replicas=[dict(rep)])

    def _endpoint_containers(self, cfg: Config, all_: bool = False) -> list[Any]:
        found = self.client.containers.list(all=all_, filters={"label": endpoint_scope(cfg)})
        return sorted(found, key=lambda c: int(c.labels.get(L_REPLICA, 0)))

    def find_endpoint(self, cfg: Config) -> list[Deployment]:
        """The running replicas of ``endpoint.name`` in this state dir (found by label only)."""
        from pipeline_components.serving.keys import endpoint_dir

        folder = endpoint_dir(cfg)
        out = []
        for c in self._endpoint_containers(cfg):
            port = int(c.labels[L_PORT])
            rep = {"url": f"http://127.0.0.1:{port}", "port": port, "container": c.id,
                   "replica": int(c.labels.get(L_REPLICA, 0))}
            out.append(self._endpoint_replica(cfg, rep, folder,
                                              float(c.labels.get(L_GRACE, 30.0))))
        return out

    def stop_endpoint(self, cfg: Config, timeout_s: float | None = None) -> list[Deployment]:
        """SIGTERM every replica (in-flight requests finish, the log drains), SIGKILL after
        ``timeout_s`` (default ``serving.shutdown_grace_s``); keep each replica's output as
        ``replica-<i>.log`` in the endpoint's folder; remove the containers, exited ones too."""
        from pipeline_components.serving.keys import endpoint_dir

        folder = endpoint_dir(cfg)
        running = self.find_endpoint(cfg)
        for dep in running:
            self._remove(dep.container, folder, save_logs=True,
                         timeout_s=dep.grace_s if timeout_s is None else timeout_s)
        self._remove_exited(cfg, folder)
        return running

    def _remove_exited(self, cfg: Config, folder: Path) -> None:
        """Replicas that died (crash, OOM) leave an exited container: keep its log, remove it."""
        for c in self._endpoint_containers(cfg, all_=True):
            if c.status != "running":
                self._remove(c.id, folder, save_logs=True)

    def endpoint_logs(self, cfg: Config, tail: int | str = "all") -> str:
        """Every running replica's output, headed by its container name."""
        return "\n".join(self.logs(dep, tail) for dep in self.find_endpoint(cfg))


def _url_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "") else host
