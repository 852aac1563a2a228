"""`abx analyze` / `abx decide` on an experiment id nothing knows: an error naming it, exit != 0."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline_components.analysis.testing import SimSpec, simulate_log
from pipeline_components.cli import main
from pipeline_components.config import load_config
from pipeline_components.experiment.state import write_state
from pipeline_components.store import feedback, insert_rows, make_engine, predictions


def _records(df: pd.DataFrame) -> list[dict]:
    return [{k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}
            for row in df.to_dict("records")]


def _abx(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
         *args: str) -> tuple[int, str]:
    """The real console entry point in-process: (exit code, stderr)."""
    monkeypatch.setattr("sys.argv", ["abx", *args])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main()
    return int(exc.value.code or 0), " ".join(capsys.readouterr().err.split())


def _params(tmp_path: Path) -> Path:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"experiment": {"state_dir": str(tmp_path / ".abx")},
                                      "features": {"out_dir": str(tmp_path / "features")}}))
    return params


def test_analyze_unknown_experiment_id_fails_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    params = _params(tmp_path)
    cfg = load_config(params, {"experiment.id": "exp-real"})
    log = simulate_log(SimSpec(reward_rate={"champion": 0.5, "challenger": 0.6}),
                       experiment_id="exp-real")
    engine = make_engine(cfg.store_url)
    insert_rows(engine, predictions, _records(log.predictions))
    insert_rows(engine, feedback, _records(log.feedback))
    code, msg = _abx(monkeypatch, capsys, "analyze", "-p", str(params), "--set",
                     "experiment.id=exp-typo")
    assert code == 8, msg
    assert "experiment id 'exp-typo': no predictions in the store" in msg
    assert "exp-real" in msg  # the ids the store does know


def test_decide_unknown_experiment_id_fails_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    params = _params(tmp_path)
    known = load_config(params, {"experiment.id": "exp-known"})
    write_state(known, "gate", {"passed": False})
    code, msg = _abx(monkeypatch, capsys, "decide", "-p", str(params), "--set",
                     "experiment.id=nope")
    assert code == 2, msg
    assert "experiment id 'nope': unknown, nothing stored" in msg and "exp-known" in msg
    # a known experiment without a canary result: the error names the missing file
    code, msg = _abx(monkeypatch, capsys, "decide", "-p", str(params), "--set",
                     "experiment.id=exp-known")
    assert code == 2 and "canary.json not found" in msg, msg
