"""`abx train`, `abx register`, `abx gate` end to end through the real command line app."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from pipeline_components.cli import app

REPO = Path(__file__).resolve().parents[2]


def _sets(data_overrides: dict[str, Any], tmp_path: Path) -> list[str]:
    ov = {**data_overrides, "experiment.state_dir": str(tmp_path / "state"),
          "training.n_trials": 2, "training.cv_folds": 2, "training.families": "[logreg]",
          "registry.model_name": "abx-cli-model"}
    return [x for k, v in ov.items() for x in ("--set", f"{k}={v}")]


def test_train_register_gate_from_the_command_line(
    data_overrides: dict[str, Any], tmp_path: Path
) -> None:
    runner = CliRunner()
    base = ["--params", str(REPO / "params.yaml"), *_sets(data_overrides, tmp_path)]
    trained = runner.invoke(app, ["train", *base, "--family", "logreg", "--workers", "1"])
    assert trained.exit_code == 0, trained.output
    assert json.loads(trained.stdout)[0]["family"] == "logreg"
    reg = runner.invoke(app, ["register", *base])
    assert reg.exit_code == 0, reg.output
    assert json.loads(reg.stdout)["bootstrap"] is True
    # First run ever: the challenger is the champion, so --strict reports "no canary" as exit 10.
    gate = runner.invoke(app, ["gate", *base, "--strict"])
    assert gate.exit_code == 10 and json.loads(gate.stdout)["passed"] is False


def test_unknown_family_is_a_config_error(data_overrides: dict[str, Any], tmp_path: Path) -> None:
    base = ["--params", str(REPO / "params.yaml"), *_sets(data_overrides, tmp_path)]
    res = CliRunner().invoke(app, ["train", *base, "--family", "gbdt"])
    assert res.exit_code != 0
    assert "training.families: unknown family 'gbdt'" in str(res.exception)
