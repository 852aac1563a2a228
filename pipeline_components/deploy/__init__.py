"""Deployment backends for the router: ``local`` (a subprocess) and ``docker`` (containers)."""

from __future__ import annotations

from pipeline_components.deploy.base import Deployment, DeploymentBackend
from pipeline_components.deploy.client import RouterClient
from pipeline_components.deploy.local import LocalBackend

__all__ = ["Deployment", "DeploymentBackend", "LocalBackend", "RouterClient", "get_backend"]


def get_backend(name: str) -> DeploymentBackend:
    """The deployment backend named by ``serving.backend`` (the one factory every caller uses).

    Raises:
        DeploymentError: an unknown name, or the docker backend cannot be imported here.
    """
    from pipeline_components.errors import DeploymentError

    if name == "local":
        return LocalBackend()
    if name == "docker":
        try:
            from pipeline_components.deploy.docker import DockerBackend
        except ImportError as exc:
            raise DeploymentError("serving.backend is 'docker' but the docker backend "
                                  f"(pipeline_components.deploy.docker) is not available: {exc}"
                                  ) from exc
        return DockerBackend()
    raise DeploymentError(f"serving.backend: unknown backend {name!r} (have: local, docker)")
