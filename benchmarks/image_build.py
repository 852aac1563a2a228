"""The endpoint image: size, and how long a build takes cold, unchanged, and after a code change.

Three builds of docker/Dockerfile with `abx image build`'s code path (base image and wheels
already on the machine, as after the first `abx image build`):

* **cold**: ``nocache`` — every layer rebuilt (the venv from the wheels, the app), what a build
  costs after the dependency pins change;
* **warm, unchanged**: the same context again, every layer from the cache;
* **warm, code change**: a copy of the context with one new module in ``pipeline_components/``:
  only the app layer and what follows it may run.

Each build gets its own throwaway tag (removed afterwards, with the untagged builder stage the
cold build leaves); the project's own tags and older untagged images are not touched. Build times
depend on the machine's load: the load average is printed before and after. Needs the private
engine (scripts/dockerd.sh).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def _line(name: str, res: Any) -> str:
    return (f"  {name:<22} {res.seconds:7.1f} s  {len(res.rebuilt):2d} of {res.steps} steps run  "
            f"image {res.size_bytes / 1e6:5.0f} MB  load after {_load()}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="benchmarks image_build", description=__doc__)
    p.add_argument("--skip-cold", action="store_true", help="only the two warm builds")
    a = p.parse_args(argv)
    from pipeline_components.deploy.engine import docker_client
    from pipeline_components.deploy.image import (
        BASE_IMAGE,
        IMAGE_REPO,
        build_image,
        context_copy,
    )

    client = docker_client()
    quiet = lambda m: None  # noqa: E731
    mark = uuid.uuid4().hex[:8]
    tags: list[str] = []
    dangling = {im.id for im in client.images.list(filters={"dangling": True})}
    work = Path(tempfile.mkdtemp(prefix="abx-bench-image-"))
    print(f"load before {_load()}; base {BASE_IMAGE}: "
          f"{client.images.get(BASE_IMAGE).attrs['Size'] / 1e6:.0f} MB", flush=True)
    try:
        first = build_image(REPO, tag=f"{IMAGE_REPO}:bench-{mark}-ref", client=client, log=quiet,
                            latest=False)
        tags.append(first.tag)
        print(f"image {first.tag}: {first.size_bytes / 1e6:.0f} MB "
              f"(reference build {first.seconds:.1f} s, {len(first.rebuilt)} steps run)",
              flush=True)
        if not a.skip_cold:
            cold = build_image(REPO, tag=f"{IMAGE_REPO}:bench-{mark}-cold", client=client,
                               log=quiet, latest=False, nocache=True)
            tags.append(cold.tag)
            print(_line("cold (no cache)", cold), flush=True)
        t0 = time.monotonic()
        same = build_image(REPO, tag=f"{IMAGE_REPO}:bench-{mark}-same", client=client, log=quiet,
                           latest=False)
        tags.append(same.tag)
        print(_line("warm, unchanged", same), flush=True)
        ctx = context_copy(work / "ctx", {"pipeline_components/_bench_marker.py":
                                          f"M = {uuid.uuid4().hex!r}\n"}, REPO)
        code = build_image(ctx, tag=f"{IMAGE_REPO}:bench-{mark}-code", client=client,
                           log=quiet, latest=False)
        tags.append(code.tag)
        print(_line("warm, code change", code), flush=True)
        steps = "; ".join(s.split(" : ", 1)[-1][:30] for s in code.rebuilt)
        print(f"  code-change steps run: {steps} "
              f"(total {time.monotonic() - t0:.1f} s for both warm builds)")
    finally:
        for tag in tags:
            try:
                client.images.remove(tag, force=True)
            except Exception:  # already gone
                pass
        # the cold build's builder stage is left untagged: remove what this run left, nothing else
        for im in client.images.list(filters={"dangling": True}):
            if im.id not in dangling:
                try:
                    client.images.remove(im.id)
                except Exception:  # a parent of another image, or gone: leave it
                    pass
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
