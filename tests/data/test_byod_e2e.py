"""Bring your own data, end to end: `abx init` -> `abx run` twice -> a decision, on real tables.

For each table (tests/data/tables.py): `abx init` infers the schema into a copy of params.yaml,
the first `abx run` registers the first champion (bootstrap), the second, with another seed,
trains a challenger, passes the leak check at the gate (no holdout unit trained the champion),
runs the canary through a real router on real HTTP (rows with nulls, unseen categories and all),
and decides. Real GX, MLflow (SQLite), Optuna, uvicorn; tiny training settings.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from pipeline_components.cli import main
from tests.data import tables

REPO = Path(__file__).resolve().parents[2]
TINY = {
    "training.n_trials": 2, "training.cv_folds": 2, "training.workers": 1,
    "training.families": "[logreg,hist_gbdt]", "training.pruning": "false",
    "canary.steps": "[0.5]", "canary.min_samples_per_step": 30, "canary.extra_looks": 0,
    "canary.max_duration_s": 120, "canary.flush_wait_s": 5, "simulator.rate_per_s": 400,
    "simulator.max_requests": 150, "analysis.min_units_per_arm": 10, "serving.port": 0,
    "registry.gate_margin": -1.0,
}


def _abx(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["abx", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    return int(exc.value.code or 0)


def _state(root: Path, exp: str, name: str) -> dict:
    return json.loads((root / ".abx/experiments" / exp / "run" / f"{name}.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize(("table", "fmt", "id_col", "target"), [
    (tables.penguins, "csv", "penguin_id", "adelie"),
    (tables.cars, "parquet", "car_id", "recent"),
])
def test_init_to_decision_on_a_real_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, table: Callable[[], pd.DataFrame],
    fmt: str, id_col: str, target: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    df = table()
    path = f"{table.__name__}.{fmt}"
    df.to_csv(path, index=False) if fmt == "csv" else df.to_parquet(path)
    shutil.copy(REPO / "params.yaml", "params.yaml")
    assert _abx(monkeypatch, "init", "--data", path, "--id", id_col, "--target", target) == 0
    sets = [f"--set={k}={v}" for k, v in {**TINY, "registry.model_name": table.__name__}.items()]
    assert _abx(monkeypatch, "run", "--experiment-id", "first", *sets) == 0
    assert _state(tmp_path, "first", "decision")["reasons"][0]["code"] == "BOOTSTRAP"
    assert _abx(monkeypatch, "run", "--experiment-id", "second",
                "--set=experiment.seed=7", *sets) == 0
    gate = json.loads((tmp_path / ".abx/experiments/second/gate.json").read_text())
    assert gate["holdout_overlap"]["checked"] and gate["holdout_overlap"]["overlap"] == 0
    assert gate["passed"], gate["reason"]
    holdout = pd.read_parquet(tmp_path / "data/features/holdout.parquet")
    assert holdout.isna().any(axis=1).sum() > 0  # users with gaps were part of the traffic
    canary = _state(tmp_path, "second", "canary")
    sim = canary["steps"][0]["simulation"]
    assert sim["sent"] > 0 and sim["answered"] == sim["sent"] and sim["http_errors"] == 0
    decision = _state(tmp_path, "second", "decision")
    assert decision["action"] in ("promote", "rollback")
    assert _abx(monkeypatch, "analyze", "--set=experiment.id=second") == 0
