"""`abx analyze --from`: an experiment run elsewhere, analysed by the same code as the log."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline_components.cli import main


def _abx(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
         *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["abx", *args])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main()
    return int(exc.value.code or 0), " ".join(capsys.readouterr().err.split())


def test_analyze_a_units_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(3)
    n = 6000
    arm = np.where(rng.random(n) < 0.5, "control", "new")
    y = (rng.random(n) < np.where(arm == "new", 0.60, 0.50)).astype(int)
    table = tmp_path / "units.csv"
    pd.DataFrame({"user": [f"u{i}" for i in range(n)], "group": arm, "converted": y,
                  "store": rng.integers(0, 300, n)}).to_csv(table, index=False)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"experiment": {"state_dir": str(tmp_path / ".abx")},
                                      "analysis": {"cuped": False}}))
    out = tmp_path / "decision.json"
    code, err = _abx(monkeypatch, capsys, "analyze", "-p", str(params), "--from", str(table),
                     "--unit", "user", "--arm", "group", "--outcome", "converted",
                     "--control", "control", "--planned", "0.5,0.5", "--json", str(out))
    assert code == 0, err
    d = json.loads(out.read_text())
    assert d["action"] == "promote" and d["winner"] == "new"
    assert d["metrics"]["champion"]["units"] + d["metrics"]["new"]["units"] == n
    # clustered by store: same decision code path, cluster-robust intervals
    code, err = _abx(monkeypatch, capsys, "analyze", "-p", str(params), "--from", str(table),
                     "--unit", "user", "--arm", "group", "--outcome", "converted",
                     "--control", "control", "--cluster", "store")
    assert code == 0, err
    code, err = _abx(monkeypatch, capsys, "analyze", "-p", str(params), "--from", str(table),
                     "--unit", "user", "--arm", "grp", "--outcome", "converted")
    assert code == 3 and "no column(s) ['grp']" in err


def test_analyze_from_a_later_gst_look_needs_the_earlier_fractions(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(4)
    n = 2000
    table = tmp_path / "units.csv"
    pd.DataFrame({"user": [f"u{i}" for i in range(n)],
                  "group": np.where(rng.random(n) < 0.5, "control", "new"),
                  "converted": (rng.random(n) < 0.5).astype(int)}).to_csv(table, index=False)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"experiment": {"state_dir": str(tmp_path / ".abx")},
                                      "analysis": {"cuped": False, "method": "gst"}}))
    base = ["analyze", "-p", str(params), "--from", str(table), "--unit", "user", "--arm",
            "group", "--outcome", "converted", "--control", "control", "--look", "3"]
    code, err = _abx(monkeypatch, capsys, *base)
    assert code != 0 and "--previous-fractions" in err  # never guesses equally spaced looks
    out = tmp_path / "d.json"
    code, err = _abx(monkeypatch, capsys, *base, "--previous-fractions", "0.1,0.2",
                     "--json", str(out))
    assert code == 0, err
    assert json.loads(out.read_text())["look"] == 3
