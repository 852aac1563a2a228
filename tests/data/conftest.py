"""Fixtures for the data-stage tests: a small config whose every output lives under tmp_path."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline_components.config import Config, load_config

REPO = Path(__file__).resolve().parents[2]
PARAMS = REPO / "params.yaml"

CliResult = tuple[int, str, str]


def tmp_overrides(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    """Overrides that point every output of the data stages into ``tmp_path``."""
    base: dict[str, Any] = {
        "experiment.state_dir": str(tmp_path / ".abx"),
        "data.raw_path": str(tmp_path / "raw" / "users.parquet"),
        "validation.report_path": str(tmp_path / "validation" / "result.json"),
        "features.out_dir": str(tmp_path / "features"),
        "data.synthetic.n_users": 600,
    }
    base.update(extra)
    return base


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., Config]:
    """Build a Config from the repo's params.yaml with tmp outputs plus any extra overrides."""

    def _make(**extra: Any) -> Config:
        return load_config(PARAMS, tmp_overrides(tmp_path, **extra))

    return _make


@pytest.fixture
def cfg(make_cfg: Callable[..., Config]) -> Config:
    return make_cfg()


@pytest.fixture
def run_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., CliResult]:
    """Run ``abx <args>`` through the real console-script entry point, in-process.

    Returns (exit code, stdout, stderr). Every output path is redirected into tmp_path.
    """
    from pipeline_components.cli import main

    def _run(*args: str, **extra: Any) -> CliResult:
        sets = [f"--set={k}={v}" for k, v in tmp_overrides(tmp_path, **extra).items()]
        monkeypatch.setattr(sys, "argv", ["abx", *args, "--params", str(PARAMS), *sets])
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            main()
        out, err = capsys.readouterr()
        code = exc.value.code
        return (code if isinstance(code, int) else (0 if code is None else 1)), out, err

    return _run
