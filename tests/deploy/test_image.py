"""The endpoint image: built offline from this checkout, small, and cheap to rebuild."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from pipeline_components.deploy.image import IMAGE_REPO, build_image, core_requirements, git_tag

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def run_in(client: Any, image: str, code: str) -> str:
    out = client.containers.run(image, ["-c", code], entrypoint=["python"], network_mode="host",
                                remove=True, stdout=True, stderr=True)
    return out.decode().strip()


def test_core_requirements_are_pinned_and_leave_the_pipeline_out() -> None:
    reqs = core_requirements(REPO)
    assert all("==" in r for r in reqs)
    names = {r.split("[")[0].split("==")[0].lower() for r in reqs}
    assert {"scikit-learn", "fastapi", "mlflow-skinny"} <= names
    assert not names & {"apache-airflow", "dvc", "great-expectations", "optuna", "mlflow"}


def test_image_is_tagged_by_commit_and_holds_only_the_endpoint(
    docker_engine: Any, endpoint_image: str
) -> None:
    assert endpoint_image == f"{IMAGE_REPO}:{git_tag(REPO)}"
    assert docker_engine.images.get(f"{IMAGE_REPO}:latest").id == \
        docker_engine.images.get(endpoint_image).id
    code = ("import importlib.util as u, sklearn, mlflow; "
            "print([m for m in ('airflow','dvc','great_expectations','optuna') if u.find_spec(m)],"
            " sklearn.__version__)")
    missing, sk_version = run_in(docker_engine, endpoint_image, code).rsplit(" ", 1)
    import sklearn

    assert missing == "[]" and sk_version == sklearn.__version__  # pickles load across the wall
    help_text = docker_engine.containers.run(endpoint_image, ["serve", "--help"],
                                             network_mode="host", remove=True).decode()
    assert "--variant" in help_text
    # what `abx endpoint serve` imports once it runs, not only its --help
    code = ("import pipeline_components.serving.endpoint_app, pipeline_components.tracking, "
            "pipeline_components.serving.operations; print('ok')")
    assert run_in(docker_engine, endpoint_image, code) == "ok"


def test_rebuild_after_a_code_change_reuses_the_dependency_layers(
    docker_engine: Any, endpoint_image: str, tmp_path: Path
) -> None:
    ctx = tmp_path / "ctx"
    for name in ("pyproject.toml", "constraints.txt", ".dockerignore"):
        ctx.mkdir(exist_ok=True)
        shutil.copy2(REPO / name, ctx / name)
    shutil.copytree(REPO / "scripts", ctx / "scripts")
    shutil.copytree(REPO / "pipeline_components", ctx / "pipeline_components",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (ctx / "docker").mkdir()
    shutil.copy2(REPO / "docker" / "Dockerfile", ctx / "docker" / "Dockerfile")
    # Hard links: the same wheel bytes, so the wheels layer's checksum matches the cached one.
    subprocess.run(["cp", "-al", str(REPO / "docker" / "wheels"), str(ctx / "docker")], check=True)
    marker = uuid.uuid4().hex
    (ctx / "pipeline_components" / "_build_marker.py").write_text(f"MARKER = {marker!r}\n")
    tag = f"{IMAGE_REPO}:test-{marker[:8]}"
    try:
        res = build_image(ctx, tag=tag, client=docker_engine, log=lambda m: None, latest=False)
        # Only the app layer and what follows it ran; the venv with every dependency was reused.
        assert res.rebuilt and "COPY pipeline_components" in res.rebuilt[0], res.rebuilt
        assert not any("pip install" in s or "/wheels" in s for s in res.rebuilt), res.rebuilt
        out = run_in(docker_engine, tag, "from pipeline_components._build_marker import MARKER; "
                                         "print(MARKER)")
        assert out == marker
    finally:
        docker_engine.images.remove(tag, force=True)
