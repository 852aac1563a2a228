"""Deployment backends for the router: ``local`` (managed subprocess) now, ``docker`` later."""

from __future__ import annotations

from pipeline_components.deploy.base import Deployment, DeploymentBackend
from pipeline_components.deploy.client import RouterClient
from pipeline_components.deploy.local import LocalBackend

__all__ = ["Deployment", "DeploymentBackend", "LocalBackend", "RouterClient", "get_backend"]


def get_backend(name: str) -> DeploymentBackend:
    """The backend named by ``serving.backend``."""
    if name == "local":
        return LocalBackend()
    from pipeline_components.errors import DeploymentError

    raise DeploymentError(f"serving.backend: {name!r} is not available yet (have: local)")
