"""The report: self-contained HTML with embedded plots + Markdown, logged to a real MLflow store."""

from __future__ import annotations

import re

import numpy as np

from pipeline_components.config import Config
from pipeline_components.experiment.report import build_report, find_psi
from pipeline_components.experiment.state import write_state
from pipeline_components.store import feedback, insert_rows, make_engine, predictions


def _log(cfg: Config, n: int = 400) -> None:
    """A finished 50/50 canary where the challenger earns more reward (0.8 vs 0.6)."""
    rng = np.random.default_rng(0)
    engine = make_engine(cfg.store_url)
    preds, fbs = [], []
    for i in range(n):
        variant = "challenger" if i % 2 else "champion"
        ts = 1_000.0 + i * 0.01
        preds.append({"experiment_id": cfg.experiment.id, "ts": ts, "request_id": f"r{i}",
                      "unit_id": f"u{i}", "variant": variant, "model_version": "2" if i % 2
                      else "1", "prediction": 0.7, "latency_ms": float(rng.gamma(2, 0.5)),
                      "status": "ok", "served": True, "features": {"x0": 0.1}})
        p = 0.8 if variant == "challenger" else 0.6
        fbs.append({"experiment_id": cfg.experiment.id, "ts": ts + 0.5, "request_id": f"r{i}",
                    "unit_id": f"u{i}", "outcome": 1.0, "reward": float(rng.random() < p)})
    insert_rows(engine, predictions, preds)
    insert_rows(engine, feedback, fbs)
    engine.dispose()


def _state(cfg: Config) -> None:
    decision = {
        "action": "promote",
        "reasons": [{"code": "EFFECT_POSITIVE", "message": "lift +0.2 <b>", "blocking": False}],
        "comparisons": [{"effect": {"lift": 0.2, "ci": [0.1, 0.3]}}],
        "drift": [{"feature": "x0", "variant": "champion", "psi": 0.05},
                  {"feature": "x0", "variant": "challenger", "psi": 0.3},
                  {"feature": "x1", "variant": "challenger", "psi": 0.01}],
        "phases": [{"variant": "challenger", "phase": 0, "n_control": 190, "n_treatment": 10,
                    "lift": -0.05, "ci": [-0.2, 0.1]},
                   {"variant": "challenger", "phase": -1, "n_control": 290, "n_treatment": 110,
                    "lift": 0.12, "ci": [0.02, 0.22]}],
    }
    write_state(cfg, "gate", {"passed": True, "champion": "1", "challenger": "2"})
    write_state(cfg, "canary", {"steps": [{"look": 1, "share": 0.5, "started_at": 1000.0,
                                           "ended_at": 1004.0, "decision": decision}],
                                "stopped": "promote", "decision": decision})
    write_state(cfg, "decision", decision)
    write_state(cfg, "outcome", {"action": "promote", "champion_before": "1",
                                 "champion_after": "2"})


def test_report_is_self_contained_and_logged(tmp_cfg: Config) -> None:
    _log(tmp_cfg)
    _state(tmp_cfg)
    out = build_report(tmp_cfg)
    page = open(out["html"]).read()
    md = open(out["markdown"]).read()
    assert out["action"] == "promote" and out["champion_after"] == "2"
    # every figure is embedded: no external file or URL is referenced
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 5
    assert "no data" not in page and "http://" not in page and "https://" not in page
    assert "lift +0.2 &lt;b&gt;" in page  # reasons are escaped
    assert "champion before: v1, after: v2" in md and "**promote**" in md
    assert "| challenger | 200 |" in md and "| champion | 200 |" in md
    assert "Effect per ramp step" in md  # per-phase effects of the ramp (issue 14)
    assert "| challenger | 1 | 190 | 10 | -0.0500 | [-0.2000, +0.1000] |" in md
    assert "| challenger | all | 290 | 110 | +0.1200 |" in md
    from mlflow import MlflowClient

    client = MlflowClient(tmp_cfg.tracking_uri)
    files = {a.path for a in client.list_artifacts(out["mlflow_run_id"], "report")}
    assert files == {"report/report.html", "report/summary.md"}
    assert build_report(tmp_cfg)["mlflow_run_id"] == out["mlflow_run_id"]  # re-run: same run


def test_report_without_traffic_says_so(tmp_cfg: Config) -> None:
    write_state(tmp_cfg, "gate", {"passed": False, "bootstrap": True, "champion": "1",
                                  "challenger": "1", "reason": "bootstrap: v1 is champion"})
    write_state(tmp_cfg, "outcome", {"action": "none", "reason": "bootstrap"})
    out = build_report(tmp_cfg, log_to_mlflow=False)
    page = open(out["html"]).read()
    assert out["action"] == "none" and "bootstrap: v1 is champion" in page
    assert page.count("no data") == 5


def test_find_psi_takes_the_worst_variant_per_feature() -> None:
    rows = [{"feature": "a", "variant": "x", "psi": 0.1}, {"feature": "a", "variant": "y",
                                                          "psi": 0.4}]
    assert find_psi({"drift": rows}) == {"a": 0.4}
    assert find_psi({"drift": []}) == {}


def test_report_of_a_decision_without_ramp_phases(tmp_cfg: Config) -> None:
    # A decision stored without a "phases" key (no ramp, or written by an older abx) still renders.
    write_state(tmp_cfg, "gate", {"passed": True, "champion": "1", "challenger": "2"})
    write_state(tmp_cfg, "decision", {"action": "rollback", "reasons": []})
    write_state(tmp_cfg, "outcome", {"action": "rollback"})
    out = build_report(tmp_cfg, log_to_mlflow=False)
    md = open(out["markdown"]).read()
    assert out["action"] == "rollback" and "Effect per ramp step" not in md
