"""Shared fixtures of the training tests: one tiny data set per session, one state dir per test.

The features stage really runs (``run_data`` + ``run_features``) on 2,000 synthetic users, once;
every test then gets its own state folder (MLflow SQLite store, Optuna journals) in ``tmp_path``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline_components import data, features, validate
from pipeline_components.config import Config, load_config

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[2]
MakeCfg = Callable[..., Config]


@pytest.fixture(scope="session")
def data_overrides(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the real data + features stages once on a small synthetic table."""
    root = tmp_path_factory.mktemp("training-data")
    ov: dict[str, Any] = {
        "data.raw_path": str(root / "raw" / "users.parquet"),
        "features.out_dir": str(root / "features"),
        "validation.report_path": str(root / "validation.json"),
        "experiment.state_dir": str(root / "state"),
        "data.synthetic.n_users": 2000,
    }
    cfg = load_config(REPO / "params.yaml", ov)
    data.run_data(cfg)
    validate.run_validate(cfg)
    features.run_features(cfg)
    return ov


@pytest.fixture()
def make_cfg(data_overrides: dict[str, Any], tmp_path: Path) -> MakeCfg:
    """Config factory: shared data, this test's state dir, fast training settings."""

    def _make(extra: dict[str, Any] | None = None) -> Config:
        ov = {
            **data_overrides,
            "experiment.state_dir": str(tmp_path / "state"),
            "training.n_trials": 3,
            "training.cv_folds": 2,
            "training.workers": 1,
            "training.families": ["logreg"],
            "training.pruning": False,
            "registry.model_name": "abx-test-model",
        }
        ov.update(extra or {})
        return load_config(REPO / "params.yaml", ov)

    return _make
