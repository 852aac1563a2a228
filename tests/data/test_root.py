"""One project root for every subcommand: the working directory, or ``--root``/``ABX_ROOT``.

The params file may live anywhere; relative paths in it (``.abx/``, ``data/``, ``reports/``)
land under the root for ``abx data`` and for ``abx run``'s run conf alike.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from pipeline_components.cli import main
from pipeline_components.experiment.config import config_for, make_conf

REPO = Path(__file__).resolve().parents[2]


def _outside_params(tmp_path: Path) -> Path:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["data"]["synthetic"]["n_users"] = 300
    conf_dir = tmp_path / "elsewhere"
    conf_dir.mkdir()
    params = conf_dir / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    return params


def _abx(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["abx", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    return int(exc.value.code or 0)


def test_cli_and_run_conf_share_the_working_directory_as_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = _outside_params(tmp_path)
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    monkeypatch.delenv("ABX_ROOT", raising=False)
    assert _abx(monkeypatch, "data", "-p", str(params)) == 0
    assert (project / "data/raw/users.parquet").is_file()
    assert not (params.parent / "data").exists()
    # `abx run` builds its conf with the same root: train/register find what data wrote
    from pipeline_components.cli.experiment import _conf

    cfg = config_for(_conf(params, None, "exp-1"))
    assert cfg.data.raw_path == project / "data/raw/users.parquet"
    assert cfg.state_dir == project / ".abx"
    assert cfg.experiment_dir == project / ".abx/experiments/exp-1"


def test_root_option_and_dag_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    params = _outside_params(tmp_path)
    monkeypatch.chdir(tmp_path)
    other = tmp_path / "other"
    assert _abx(monkeypatch, "--root", str(other), "data", "-p", str(params)) == 0
    assert (other / "data/raw/users.parquet").is_file()
    assert not (tmp_path / "data").exists()
    # the DAG passes no root: its repo is the params file's folder
    dag_cfg = config_for(make_conf(params, "exp-dag"))
    assert dag_cfg.report.out_dir == params.parent / "reports"
