"""The deployment backend interface every router backend (local process, docker) implements."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from pipeline_components.config import Config
from pipeline_components.errors import DeploymentError


@dataclass(frozen=True)
class Deployment:
    """A running router: small and JSON-able, so it travels through XCom and the shell."""

    url: str
    pid: int
    experiment_id: str
    port: int
    backend: str = "local"
    host: str = "127.0.0.1"
    log_path: str = ""
    started_at: float = 0.0
    grace_s: float = 30.0  # serving.shutdown_grace_s: SIGTERM -> SIGKILL budget of stop()
    # docker backend: replica 0's container id, and every replica ({"url", "port", "container"}).
    container: str = ""
    replicas: list[dict[str, Any]] = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        """Every replica's URL (one for the local backend)."""
        return [str(r["url"]) for r in self.replicas] or [self.url]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Deployment:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def replica_count(cfg: Config, replicas: int | None = None) -> int:
    """How many endpoint replicas to start (``replicas`` or ``endpoint.replicas``).

    Raises:
        DeploymentError: several replicas on a SQLite control store (they would not share it
            across hosts, and SQLite serialises every writer).
    """
    n = replicas or cfg.endpoint.replicas
    if n > 1 and cfg.control_url.startswith("sqlite"):
        raise DeploymentError(f"endpoint.replicas={n}: several replicas need a shared "
                              "PostgreSQL control store (endpoint.control_url / "
                              "serving.store_url = postgresql://...)")
    return n


class DeploymentBackend(ABC):
    """Start, health-wait, stop and find routers of an experiment."""

    name: str = "base"

    @abstractmethod
    def start(self, cfg: Config, variants: Mapping[str, str] | None = None) -> Deployment:
        """Start a router for ``cfg``'s experiment and return once it is ready."""

    @abstractmethod
    def stop(self, dep: Deployment, timeout_s: float | None = None) -> None:
        """Stop gracefully (the writer flushes) within ``timeout_s`` (default ``dep.grace_s``,
        the budget the router plans its drain for); idempotent."""

    @abstractmethod
    def find(self, experiment_id: str, cfg: Config | None = None) -> list[Deployment]:
        """Routers of this experiment still running (leftovers of a crashed run)."""

    def alive(self, dep: Deployment) -> bool:
        return True

    # A long-lived endpoint (docs/endpoint.md): N replicas of `abx endpoint serve` on one
    # control store. Backends that can run it override these three.
    def start_endpoint(self, cfg: Config, replicas: int | None = None) -> list[Deployment]:
        """Start the endpoint's replicas (idempotent: returns the live ones if already up)."""
        raise DeploymentError(f"backend {self.name!r} cannot run an endpoint yet")

    def find_endpoint(self, cfg: Config) -> list[Deployment]:
        """The endpoint's replicas this backend started and that are still running."""
        return []

    def stop_endpoint(self, cfg: Config, timeout_s: float | None = None) -> list[Deployment]:
        """Stop the endpoint's replicas; returns what was stopped."""
        return []

    def health_wait(self, dep: Deployment, timeout_s: float = 60.0) -> None:
        """Poll ``/readyz`` until 200; raise DeploymentError on timeout or if the router died."""
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if not self.alive(dep):
                    raise DeploymentError(f"router pid {dep.pid} exited before it was ready; "
                                          f"see {dep.log_path or 'its log'}: {self.log_tail(dep)}")
                try:
                    r = client.get(f"{dep.url}/readyz")
                    if r.status_code == 200:
                        return
                    last = r.text
                    error = r.json().get("error") if r.status_code == 503 else None
                    if error:
                        raise DeploymentError(f"router at {dep.url} cannot load models: {error}")
                except httpx.HTTPError as exc:
                    last = str(exc)
                time.sleep(0.1)
        raise DeploymentError(f"router at {dep.url} not ready after {timeout_s:.0f} s: {last}")

    def log_tail(self, dep: Deployment, n: int = 20) -> str:
        return ""
