"""`pip install abx[serve]` alone, in a fresh venv: it resolves against constraints.txt, imports,
and `abx endpoint serve` answers a real /predict for a real registered model over HTTP, with
neither Airflow, DVC nor Great Expectations installed; the store it creates comes from the
migration scripts the package ships. This is what an endpoint replica (the
container image) installs, so a serving module that imports the pipeline stack fails here."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline_components.config import load_config
from pipeline_components.deploy.local import free_port
from pipeline_components.extras import EXTRA_OF, missing_extra
from pipeline_components.serving.testing import (
    TEST_CLIENT_KEY,
    TEST_DATA,
    sample_rows,
)

REPO = Path(__file__).resolve().parents[1]
PIPELINE_ONLY = ("airflow", "dvc", "great_expectations", "optuna")


def _copy_source(dst: Path) -> Path:
    """What an sdist holds, so the build never writes build/ or egg-info into the checkout."""
    dst.mkdir()
    for name in ("pyproject.toml", "README.md", "constraints.txt"):
        shutil.copy2(REPO / name, dst / name)
    shutil.copytree(REPO / "pipeline_components", dst / "pipeline_components",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return dst


@pytest.fixture(scope="module")
def serve_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding `pip install -c constraints.txt .[serve]`, fully resolved."""
    root = tmp_path_factory.mktemp("serve-venv")
    src = _copy_source(root / "src")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    res = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-compile",
         "-c", str(src / "constraints.txt"), f"{src}[serve]"],
        capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, f"pip install .[serve] failed:\n{res.stderr[-3000:]}"
    return venv


def _run(venv: Path, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(venv / "bin" / args[0]), *args[1:]], capture_output=True,
                          text=True, timeout=300, **kw)


@pytest.mark.slow
def test_serve_extra_holds_no_pipeline_package_and_pip_check_is_clean(serve_venv: Path) -> None:
    code = ("import importlib.util as u, pipeline_components.serving.endpoint_app; "
            f"print([m for m in {PIPELINE_ONLY!r} if u.find_spec(m)])")
    res = _run(serve_venv, "python", "-c", code)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
    check = _run(serve_venv, "python", "-m", "pip", "check")
    assert check.returncode == 0, check.stdout + check.stderr


def _wait_ready(url: str, proc: subprocess.Popen[str], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"abx endpoint serve exited:\n{proc.communicate()[1]}"
        try:
            if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} not ready after {timeout_s} s")


def _served_by(url: str, row: dict[str, Any], variant: str, proc: subprocess.Popen[str],
               timeout_s: float = 90) -> str:
    """The model version of the first answer from ``variant`` (it becomes routable once loaded)."""
    deadline = time.monotonic() + timeout_s
    i = 0
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"abx endpoint serve exited:\n{proc.communicate()[1]}"
        i += 1
        body = httpx.post(f"{url}/predict", json={"unit_id": f"u-{i}", "features": row},
                          timeout=30).json()
        if body.get("variant") == variant:
            return str(body["model_version"])
        time.sleep(0.1)
    raise AssertionError(f"no answer from {variant!r} after {timeout_s} s")


@pytest.mark.slow
def test_endpoint_from_the_serve_extra_answers_predict_over_http(
        serve_venv: Path, registry_dir: Path, tmp_path: Path) -> None:
    registry = registry_dir  # abx-model v1 (champion), v2 (challenger), registered here
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy2(REPO / "params.yaml", project / "params.yaml")
    port = free_port()
    sets = {**TEST_DATA, "tracking.tracking_uri": f"sqlite:///{registry}/mlflow.db",
            "experiment.state_dir": str(project / "state"),
            "endpoint.client_key": TEST_CLIENT_KEY}
    args = [a for k, v in sets.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    env = {**os.environ, "PATH": f"{serve_venv / 'bin'}:{os.environ['PATH']}"}
    proc = subprocess.Popen(
        [str(serve_venv / "bin" / "abx"), "--root", str(project), "endpoint", "serve",
         "--host", "127.0.0.1", "--port", str(port), *args],
        cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc)
        row = sample_rows(load_config(None, TEST_DATA), 1)[0]
        resp = httpx.post(f"{url}/predict", json={"unit_id": "u-1", "features": row},
                          timeout=30)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["variant"] == "champion"
        assert str(body["model_version"]) == "1"
        assert 0.0 <= float(body["prediction"]) <= 1.0
        # a second model loaded through the control state, and an outcome: the lazily imported
        # paths of an experiment on the endpoint, still without the pipeline extra
        load = _run(serve_venv, "abx", "--root", str(project), "endpoint", "load", "challenger",
                    "models:/abx-model@challenger", "--weight", "1", *args, cwd=project, env=env)
        assert load.returncode == 0, load.stdout + load.stderr
        assert _served_by(url, row, "challenger", proc) == "2"
        fb = httpx.post(f"{url}/feedback", json={"unit_id": "u-1", "outcome": 1.0},
                        headers={"X-ABX-Client-Key": TEST_CLIENT_KEY}, timeout=30)
        assert fb.status_code in (200, 202), fb.text
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


@pytest.mark.slow
def test_a_pipeline_command_without_the_pipeline_extra_names_the_extra(
        serve_venv: Path, tmp_path: Path) -> None:
    shutil.copy2(REPO / "params.yaml", tmp_path / "params.yaml")
    res = _run(serve_venv, "python", "-c",
               "import sys; from pipeline_components.cli import main; "
               "sys.argv = ['abx', 'plan']; main()", cwd=tmp_path)
    assert res.returncode == 12, res.stdout + res.stderr
    assert "abx[pipeline]" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize(("name", "extra"), [("airflow.sdk", "pipeline"), ("fastapi", "serve"),
                                             ("great_expectations", "pipeline")])
def test_missing_extra_names_the_extra(name: str, extra: str) -> None:
    err = missing_extra(ModuleNotFoundError(f"No module named {name!r}", name=name))
    assert err is not None and f"abx[{extra}]" in str(err) and err.exit_code == 12


def test_a_module_of_no_extra_stays_a_bug() -> None:
    assert missing_extra(ModuleNotFoundError("x", name="pipeline_components.nope")) is None
    assert "sqlalchemy" not in EXTRA_OF  # core: never reported as a missing extra
