"""Session fixtures shared across test folders: the Docker engine and the endpoint image.

Both are real: ``scripts/dockerd.sh`` starts abx's private engine when it is down (installing
docker.io on a fresh machine) and the image is built with ``abx image build``'s code path; the
layer cache on the engine's stable data root makes every build after the first take seconds.
A test that needs them fails when they cannot be had; it never skips.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def docker_engine() -> Any:
    """A pinged docker client on abx's private engine (started if down); DOCKER_HOST exported."""
    res = subprocess.run(["bash", str(REPO / "scripts" / "dockerd.sh")], capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, f"scripts/dockerd.sh failed:\n{res.stderr}"
    host = next(line.split("=", 1)[1] for line in res.stdout.splitlines()
                if line.startswith("DOCKER_HOST="))
    os.environ["DOCKER_HOST"] = host
    from pipeline_components.deploy.engine import docker_client

    client = docker_client()
    yield client
    client.close()


@pytest.fixture(scope="session")
def endpoint_image(docker_engine: Any) -> str:
    """``abx-endpoint:<git sha>`` built from this checkout (a no-op rebuild when cached)."""
    from pipeline_components.deploy.image import build_image

    return build_image(REPO, client=docker_engine, log=lambda m: None).tag
