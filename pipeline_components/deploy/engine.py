"""Connect to the Docker engine abx uses (a private one on this kind of machine).

``scripts/dockerd.sh`` starts a private engine on ``/run/abx-docker/docker.sock`` and prints
``DOCKER_HOST``; this module honours ``DOCKER_HOST`` when set and otherwise finds that socket, so
a DAG task, the CLI and the tests reach the same engine without extra configuration.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from pipeline_components.errors import DeploymentError

ABX_SOCKET = Path(os.environ.get("ABX_DOCKER_RUN", "/run/abx-docker")) / "docker.sock"
MANAGED = "org.abx.managed-by"  # label on every container abx starts; nothing else is touched
REPO = Path(__file__).resolve().parents[2]


def docker_host() -> str | None:
    """``DOCKER_HOST`` if set, else abx's private engine socket if it exists, else None."""
    if os.environ.get("DOCKER_HOST"):
        return os.environ["DOCKER_HOST"]
    if ABX_SOCKET.exists():
        return f"unix://{ABX_SOCKET}"
    return None


def docker_client(timeout_s: int = 120) -> Any:
    """A pinged ``docker.DockerClient``; DeploymentError saying how to start an engine if none."""
    try:
        from docker.errors import DockerException

        docker: Any = importlib.import_module("docker")  # mypy would see the repo's docker/
    except ImportError as exc:  # the endpoint image has no docker SDK (pipeline extra)
        raise DeploymentError(f"the docker SDK is not installed ({exc}); "
                              "pip install 'abx[pipeline]'") from exc
    host = docker_host()
    try:
        client = docker.DockerClient(base_url=host, timeout=timeout_s) if host else \
            docker.from_env(timeout=timeout_s)
        client.ping()
    except DockerException as exc:
        raise DeploymentError(
            f"docker engine at {host or 'the default socket'} is not reachable ({exc}); "
            "start abx's private engine with scripts/dockerd.sh (it prints the DOCKER_HOST)"
        ) from exc
    return client


def image_exists(client: Any, tag: str) -> bool:
    """Look an image up locally; never pulls (the SDK's ``containers.run`` would)."""
    from docker.errors import ImageNotFound

    try:
        client.images.get(tag)
    except ImageNotFound:
        return False
    return True
