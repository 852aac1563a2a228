"""`dvc repro` on a scratch copy of the repo: stages run in order, then a rerun does nothing."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import REPO

IGNORE = shutil.ignore_patterns(
    ".venv", ".git", ".abx", "data", "tests", "reports", "mlruns", "airflow-home", "dvc.lock",
    "__pycache__", "*.egg-info", ".ruff_cache", ".mypy_cache", ".pytest_cache",
)


def _run(args: list[str], cwd: Path) -> str:
    env = dict(os.environ, DVC_NO_ANALYTICS="1", GX_ANALYTICS_ENABLED="false",
               MLFLOW_DISABLE_TELEMETRY="true", OMP_NUM_THREADS="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def _set_param(params: Path, key: str, value: str) -> None:
    # edit the text, not a YAML round trip, so the file keeps its comments and layout
    text, n = re.subn(rf"(?m)^(\s+{key}:\s*)\S+", rf"\g<1>{value}", params.read_text(), count=1)
    assert n == 1, key
    params.write_text(text)


@pytest.mark.slow
def test_dvc_repro_runs_once_then_skips(tmp_path: Path) -> None:
    work = tmp_path / "repo"
    shutil.copytree(REPO, work, ignore=IGNORE)
    _set_param(work / "params.yaml", "n_users", "2000")
    _run(["git", "init", "-q"], work)
    if not (work / ".dvc").is_dir():
        _run(["dvc", "init", "-q"], work)

    first = _run(["dvc", "repro"], work)
    assert all(f"Running stage '{s}'" in first for s in ("data", "validate", "features"))
    meta = json.loads((work / "data" / "features" / "meta.json").read_text())
    lock = yaml.safe_load((work / "dvc.lock").read_text())
    raw_md5 = lock["stages"]["data"]["outs"][0]["md5"]
    assert meta["data_version"]["dvc_md5"] == raw_md5  # the DVC hash travels with the features
    assert sum(meta["rows"].values()) == 2000

    second = _run(["dvc", "repro"], work)
    assert "Running stage" not in second and "Data and pipelines are up to date" in second

    # a features-only knob reruns features alone
    _set_param(work / "params.yaml", "holdout_fraction", "0.25")
    third = _run(["dvc", "repro"], work)
    assert "Running stage 'features'" in third
    assert "Running stage 'data'" not in third and "Running stage 'validate'" not in third
