"""The endpoint image: built offline from this checkout, small, and cheap to rebuild."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from pipeline_components.deploy.image import (
    BASE_IMAGE,
    IMAGE_REPO,
    build_image,
    context_copy,
    core_requirements,
    created,
    git_tag,
    prune_images,
)
from pipeline_components.errors import DeploymentError

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
    marker = uuid.uuid4().hex
    ctx = context_copy(tmp_path / "ctx",
                       {"pipeline_components/_build_marker.py": f"MARKER = {marker!r}\n"}, REPO)
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


def test_docker_timestamps_sort_by_time_not_text() -> None:
    stamps = ["2026-12-02T01:00:05.12Z", "2026-12-02T01:00:05.0999Z", "2026-12-02T01:00:05Z",
              "2026-12-02T01:00:04.999999999Z"]
    assert sorted(stamps, key=created) == [stamps[3], stamps[2], stamps[1], stamps[0]]


def test_prune_keeps_the_newest_abx_images_and_never_a_foreign_or_used_one(
    docker_engine: Any, endpoint_image: str
) -> None:
    """Images built in order: one a container uses, one without abx's label (same repository),
    an old one tagged latest, then three more; keep=2 removes only the one in between."""
    import io

    repo = f"abx-endpoint-prune-{uuid.uuid4().hex[:8]}"

    def make(name: str, base: str = endpoint_image) -> str:
        dockerfile = f"FROM {base}\nLABEL org.abx.test-prune={repo}-{name}\n"
        docker_engine.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=f"{repo}:{name}",
                                   pull=False, rm=True, network_mode="host")
        return f"{repo}:{name}"

    used = make("used")
    holder = docker_engine.containers.create(used, ["endpoint", "serve", "--help"])
    foreign = make("foreign", BASE_IMAGE)  # no org.abx.component label: not abx's
    old = make("old")
    docker_engine.images.get(old).tag(repo, "latest")
    v1, v2, v3 = make("v1"), make("v2"), make("v3")
    try:
        with pytest.raises(DeploymentError, match="keep_images"):
            prune_images(docker_engine, 0, repo)
        assert prune_images(docker_engine, 2, repo) == [v1]
        left = {t for im in docker_engine.images.list(name=repo) for t in im.tags}
        assert left == {used, foreign, old, f"{repo}:latest", v2, v3}
        assert prune_images(docker_engine, 2, repo) == []  # nothing more to do
    finally:
        holder.remove(force=True)
        for image in docker_engine.images.list(name=repo):
            docker_engine.images.remove(image.id, force=True)
