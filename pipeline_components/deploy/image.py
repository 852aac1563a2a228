"""Build the endpoint image ``abx-endpoint:<git sha>`` with the docker SDK, offline.

Three steps, each skipped when already done (the machine is shared and builds are CPU-heavy):

1. the base image (Debian minbase + Python 3.11) from ``scripts/docker-base.sh`` if missing;
2. wheels of the endpoint's dependencies (pyproject core ``dependencies`` plus the ``serve`` extra,
   pinned by constraints.txt) into
   ``docker/wheels/`` with ``pip download --only-binary=:all:`` on the host, because pip inside a
   container fails TLS here; skipped while the pins are unchanged (a stamp holds their hash);
3. ``docker build`` of ``docker/Dockerfile`` (legacy builder, host network, never pulls). The
   dependency layers only depend on ``docker/wheels/``, so a code-only rebuild reuses them.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline_components.deploy.engine import REPO, docker_client, docker_host, image_exists
from pipeline_components.errors import DeploymentError

BASE_IMAGE = "local/debian:bookworm-py311"
IMAGE_REPO = "abx-endpoint"
IMAGE_LABEL = "org.abx.component=endpoint"  # set by docker/Dockerfile: marks images abx built


@dataclass
class BuildResult:
    """What a build did: tags, size and how many steps came from the layer cache."""

    tag: str
    image_id: str
    size_bytes: int
    steps: int
    cached_steps: int
    seconds: float
    tags: list[str] = field(default_factory=list)
    rebuilt: list[str] = field(default_factory=list)  # steps that ran (not FROM/ARG, not cached)
    log: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)  # older tags removed (keep_images)


def rebuilt_steps(lines: list[str]) -> list[str]:
    """The build steps that were executed rather than taken from the layer cache."""
    chunks: list[list[str]] = []
    for line in lines:
        if line.startswith("Step "):
            chunks.append([line.strip()])
        elif chunks:
            chunks[-1].append(line)
    out = []
    for chunk in chunks:
        instruction = chunk[0].split(" : ", 1)[-1].split(" ", 1)[0].upper()
        if instruction not in ("FROM", "ARG") and not any("Using cache" in x for x in chunk):
            out.append(chunk[0])
    return out


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def core_requirements(root: Path = REPO) -> list[str]:
    """What ``pip install abx[serve]`` installs (core + ``serve`` extra), pinned to
    constraints.txt (``uvicorn[standard]==0.54.0``)."""
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + project["optional-dependencies"]["serve"]
    pins: dict[str, str] = {}
    for line in (root / "constraints.txt").read_text().splitlines():
        name, sep, version = line.split("#")[0].strip().partition("==")
        if sep:
            pins[_norm(name.split("[")[0])] = version.strip()
    out = []
    for dep in deps:
        m = re.match(r"^\s*([A-Za-z0-9_.-]+)(\[[^\]]*\])?", dep)
        if m is None or _norm(m.group(1)) not in pins:
            raise DeploymentError(f"pyproject.toml dependency {dep!r} has no exact pin in "
                                  "constraints.txt; add one so the image matches the lock")
        out.append(f"{m.group(1)}{m.group(2) or ''}=={pins[_norm(m.group(1))]}")
    return out


def download_wheels(root: Path = REPO, log: Callable[[str], None] = print) -> Path:
    """Fill ``docker/wheels/`` (plus its requirements.txt) unless the pins did not change."""
    wheels = root / "docker" / "wheels"
    reqs = "\n".join(core_requirements(root)) + "\n"
    digest = hashlib.sha256((reqs + (root / "constraints.txt").read_text()).encode()).hexdigest()
    stamp = wheels / ".stamp"
    if stamp.is_file() and stamp.read_text().strip() == digest:
        return wheels
    wheels.mkdir(parents=True, exist_ok=True)
    for old in wheels.glob("*.whl"):
        old.unlink()
    (wheels / "requirements.txt").write_text(reqs)
    log(f"image: pip download of {len(reqs.split())} pinned core requirements into {wheels}")
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
           "-d", str(wheels), "-r", str(wheels / "requirements.txt"),
           "-c", str(root / "constraints.txt")]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise DeploymentError(f"pip download for the image failed: {res.stderr.strip()[-2000:]}")
    stamp.write_text(digest)
    return wheels


def ensure_base(client: Any, root: Path = REPO, tag: str = BASE_IMAGE) -> str:
    """Build the base image with scripts/docker-base.sh once (debootstrap + docker import)."""
    if not image_exists(client, tag):
        env = dict(os.environ)
        host = docker_host()
        if host:
            env["DOCKER_HOST"] = host
        res = subprocess.run(["bash", str(root / "scripts" / "docker-base.sh"), tag],
                             capture_output=True, text=True, env=env)
        if res.returncode != 0 or not image_exists(client, tag):
            raise DeploymentError(f"base image {tag}: scripts/docker-base.sh failed: "
                                  f"{(res.stderr or res.stdout).strip()[-2000:]}")
    return tag


def git_tag(root: Path = REPO) -> str:
    """The short commit of ``root``, ``-dirty`` when tracked files differ from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                              text=True).stdout.strip()

    sha = git("rev-parse", "--short=12", "HEAD") or "nogit"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "pipeline_components")
    return f"{sha}-dirty" if dirty else sha


def context_copy(dest: Path, files: dict[str, str], root: Path = REPO) -> Path:
    """A copy of ``root``'s build context at ``dest`` plus ``files`` (relative path -> text): what
    a code-only change looks like to the builder (tests and benchmarks/image_build.py). The
    wheels are hard links: the same bytes, so the wheels layer's checksum matches the cached one.
    """
    import shutil

    dest.mkdir(parents=True)
    for name in ("pyproject.toml", "constraints.txt", ".dockerignore"):
        shutil.copy2(root / name, dest / name)
    shutil.copytree(root / "scripts", dest / "scripts")
    shutil.copytree(root / "pipeline_components", dest / "pipeline_components",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (dest / "docker").mkdir()
    shutil.copy2(root / "docker" / "Dockerfile", dest / "docker" / "Dockerfile")
    subprocess.run(["cp", "-al", str(root / "docker" / "wheels"), str(dest / "docker")],
                   check=True)
    for rel, text in files.items():
        (dest / rel).write_text(text)
    return dest


def created(stamp: str) -> tuple[str, int]:
    """A sortable form of Docker's ``Created`` (RFC 3339 with nanoseconds, trailing zeros cut:
    ``...:05.12Z`` is later than ``...:05.0999Z`` although it sorts before it as text)."""
    m = re.match(r"^([^.Z+]+)(?:\.(\d+))?", stamp)
    if m is None:
        return (stamp, 0)
    return (m.group(1), int((m.group(2) or "0").ljust(9, "0")[:9]))


def prune_images(client: Any, keep: int, repo: str = IMAGE_REPO,
                 protect: tuple[str, ...] = ()) -> list[str]:
    """Remove the tags of ``repo`` images abx built (``org.abx.component=endpoint``) beyond the
    ``keep`` newest images; returns the tags removed.

    Every build of a new commit adds a ~500 MB-looking tag (the dependency layers are shared, the
    app layer is not), so without this the engine's disk only grows. Never removed: an image
    without abx's label (someone else's), one tagged ``:latest`` or in ``protect``, and one a
    container (running or stopped) still uses; the engine itself refuses the last as well.
    """
    from docker.errors import APIError, ImageNotFound

    if keep < 1:
        raise DeploymentError(f"serving.docker.keep_images must be >= 1, got {keep}")
    images = client.images.list(name=repo, filters={"label": IMAGE_LABEL})
    images.sort(key=lambda im: created(str(im.attrs.get("Created", ""))), reverse=True)
    in_use = {c.attrs.get("Image") for c in client.containers.list(all=True)}
    removed: list[str] = []
    for image in images[keep:]:
        tags = [t for t in image.tags if t.rsplit(":", 1)[0] == repo]
        if image.id in in_use or any(t.endswith(":latest") or t in protect for t in tags):
            continue
        for t in tags:
            try:
                client.images.remove(t)
            except (APIError, ImageNotFound):  # in use after all, or gone meanwhile: keep going
                continue
            removed.append(t)
    return removed


def build_image(root: Path = REPO, tag: str | None = None, client: Any = None,
                log: Callable[[str], None] = print, latest: bool = True,
                keep: int | None = None, nocache: bool = False) -> BuildResult:
    """Build and tag ``abx-endpoint:<git sha>`` (and ``:latest``, the backend's default image);
    with ``keep``, remove older abx-built tags beyond the ``keep`` newest images
    (``serving.docker.keep_images``). ``nocache`` rebuilds every layer (a cold build, for
    benchmarks/image_build.py). Returns a BuildResult saying which steps were rebuilt."""
    client = client or docker_client()
    base = ensure_base(client, root)
    download_wheels(root, log)
    tag = tag or f"{IMAGE_REPO}:{git_tag(root)}"
    t0, image_id = time.monotonic(), ""
    lines: list[str] = []
    stream = client.api.build(path=str(root), dockerfile="docker/Dockerfile", tag=tag,
                              buildargs={"BASE": base}, network_mode="host", pull=False,
                              rm=True, forcerm=True, decode=True, nocache=nocache)
    for chunk in stream:
        if "error" in chunk:
            raise DeploymentError(f"docker build of {tag} failed: {chunk['error'].strip()}\n"
                                  + "".join(lines[-15:]))
        text = chunk.get("stream", "")
        if text.strip():
            lines.append(text)
            if text.startswith("Step "):
                log(f"image: {text.strip()}")
        image_id = chunk.get("aux", {}).get("ID", image_id)
    image = client.images.get(tag)
    tags = [tag]
    if latest:
        image.tag(IMAGE_REPO, "latest")
        tags.append(f"{IMAGE_REPO}:latest")
    steps = sum(1 for line in lines if line.startswith("Step "))
    cached = sum(1 for line in lines if "Using cache" in line)
    seconds = time.monotonic() - t0
    pruned = prune_images(client, keep, tag.rsplit(":", 1)[0], tuple(tags)) if keep else []
    for t in pruned:
        log(f"image: removed old tag {t} (serving.docker.keep_images={keep})")
    return BuildResult(tag=tag, image_id=image_id or image.id, size_bytes=int(image.attrs["Size"]),
                       steps=steps, cached_steps=cached, seconds=seconds,
                       tags=tags, rebuilt=rebuilt_steps(lines), log=lines, pruned=pruned)
