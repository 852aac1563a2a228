"""The stage entry point on a real store (SQLite file; PostgreSQL when marked), and the CLI."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from pipeline_components.analysis import analyze, analyze_frames
from pipeline_components.analysis.testing import SimLog, SimSpec, simulate_log
from pipeline_components.cli import app
from pipeline_components.config import Config
from pipeline_components.store import feedback, insert_rows, make_engine, predictions

HALF = {"champion": 0.5, "challenger": 0.5}


def _records(df: pd.DataFrame) -> list[dict]:
    return [{k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}
            for row in df.to_dict("records")]


def _store(url: str, log: SimLog) -> None:
    engine = make_engine(url)
    insert_rows(engine, predictions, _records(log.predictions))
    insert_rows(engine, feedback, _records(log.feedback))


def test_analyze_reads_the_store_like_the_frames(cfg: Config) -> None:
    log = simulate_log(SimSpec(reward_rate={"champion": 0.5, "challenger": 0.65},
                               pending_share=0.1), experiment_id=cfg.experiment.id)
    _store(cfg.store_url, log)
    other = simulate_log(SimSpec(n_units=50), experiment_id="someone-else")
    _store(cfg.store_url, other)  # another experiment's rows must not leak in
    from_store = analyze(cfg, expected_weights=HALF, covariates=log.covariates,
                         reference=log.reference)
    from_frames = analyze_frames(cfg, log.predictions, log.feedback, expected_weights=HALF,
                                 covariates=log.covariates, reference=log.reference)
    assert from_store.to_dict() == from_frames.to_dict()
    assert from_store.action == "promote" and from_store.drift


@pytest.mark.postgres
def test_analyze_on_postgresql(cfg_with: Callable[..., Config], pg_url: str) -> None:
    exp = f"pg-{uuid.uuid4().hex[:8]}"
    cfg = cfg_with()
    cfg = cfg.model_copy(update={
        "experiment": cfg.experiment.model_copy(update={"id": exp}),
        "serving": cfg.serving.model_copy(
            update={"store_url": pg_url}),
    })
    log = simulate_log(SimSpec(n_units=600), experiment_id=exp)
    _store(cfg.store_url, log)
    d = analyze(cfg, expected_weights=HALF)
    assert d.experiment_id == exp and sum(m.units for m in d.metrics.values()) == 600


def test_cli_plan_prints_statsmodels_sizes(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("{}\n")  # the built-in defaults
    res = CliRunner().invoke(app, ["plan", "-p", str(params), "--baseline", "0.1", "--mde",
                                   "0.01"])
    assert res.exit_code == 0, res.output
    assert "14749" in res.output  # fixed information / (p0 q0 + p1 q1), as test_sequential checks
    bad = CliRunner().invoke(app, ["plan", "-p", str(params), "--baseline", "0.995", "--mde",
                                   "0.01"])
    assert bad.exit_code != 0


def test_cli_analyze_prints_and_writes_json(cfg: Config, tmp_path: Path) -> None:
    log = simulate_log(SimSpec(reward_rate={"champion": 0.5, "challenger": 0.65}),
                       experiment_id=cfg.experiment.id)
    _store(cfg.store_url, log)
    params = tmp_path / "params.yaml"
    import yaml

    params.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    out = tmp_path / "d" / "decision.json"
    res = CliRunner().invoke(app, ["analyze", "-p", str(params), "--weights",
                                   "champion=0.5,challenger=0.5", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "PROMOTE" in res.output and "EFFECT_POSITIVE" in res.output
    assert json.loads(out.read_text())["action"] == "promote"
    bad = CliRunner().invoke(app, ["analyze", "-p", str(params), "--weights", "champion"])
    assert bad.exit_code != 0


def test_forced_qa_requests_are_not_experiment_traffic(cfg: Config) -> None:
    # 600 QA requests forced onto the challenger would be a glaring SRM (and would move the
    # metric) if they counted; marked "forced", they are left out of every metric.
    log = simulate_log(SimSpec(n_units=1000, seed=3))
    qa = log.predictions[log.predictions["variant"] == "challenger"].head(600).copy()
    qa["unit_id"] = [f"qa-{i}" for i in range(len(qa))]
    qa["request_id"] = [f"qa-r{i}" for i in range(len(qa))]
    qa["assignment"] = "forced"
    preds = pd.concat([log.predictions.assign(assignment="hash"), qa], ignore_index=True)
    counted = analyze_frames(cfg, preds.assign(assignment="hash"), log.feedback,
                             expected_weights=HALF)
    assert "SRM" in counted.codes()  # the harness check: counted, they do mismatch
    d = analyze_frames(cfg, preds, log.feedback, expected_weights=HALF)
    base = analyze_frames(cfg, log.predictions, log.feedback, expected_weights=HALF)
    assert "SRM" not in d.codes()
    assert d.metrics["challenger"].units == base.metrics["challenger"].units


def test_cli_gst_look_needs_the_earlier_looks(cfg: Config, tmp_path: Path) -> None:
    # A later gst look spends alpha on the earlier looks' real information: without a record
    # of them (canary state or --previous-fractions) it refuses instead of guessing.
    log = simulate_log(SimSpec(n_units=600), experiment_id=cfg.experiment.id)
    _store(cfg.store_url, log)
    params = tmp_path / "params.yaml"
    import yaml

    raw = cfg.model_dump(mode="json")
    raw["analysis"]["method"] = "gst"
    params.write_text(yaml.safe_dump(raw))
    args = ["analyze", "-p", str(params), "--weights", "champion=0.5,challenger=0.5", "--look",
            "3"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code != 0 and "--previous-fractions" in res.output + str(res.exception)
    ok = CliRunner().invoke(app, [*args, "--previous-fractions", "0.05,0.1"])
    assert ok.exit_code == 0, ok.output
