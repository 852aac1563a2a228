"""The experiment report: one self-contained HTML file (plots embedded) and a Markdown summary.

Built from what the run stored (gate, canary steps, decision, outcome JSON under the experiment
folder) and the prediction/feedback log, so it can be rebuilt at any time with ``abx report``.
Both files are logged to MLflow (a run named ``report-<experiment id>``) and their paths returned.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from pipeline_components.analysis.decision import reason_dicts
from pipeline_components.config import Config
from pipeline_components.experiment import plots
from pipeline_components.experiment.state import read_state, write_state


def load_log(cfg: Config) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Served predictions and their joined rewards (one row per labelled request)."""
    from pipeline_components.store import feedback, make_engine, predictions, read_frame

    engine = make_engine(cfg.store_url)
    try:
        pred = read_frame(engine, predictions, cfg.experiment.id)
        fb = read_frame(engine, feedback, cfg.experiment.id)
    finally:
        engine.dispose()
    if not pred.empty:
        pred = pred[pred["served"].astype(bool)]
    if pred.empty or fb.empty:
        return pred, pd.DataFrame(columns=["ts", "variant", "reward"])
    fb = fb.dropna(subset=["request_id"]).drop_duplicates("request_id", keep="last")
    joined = pred.merge(fb[["request_id", "reward"]], on="request_id", how="inner")
    return pred, joined.dropna(subset=["reward"])[["ts", "variant", "reward", "unit_id"]]


def find_psi(obj: Any) -> dict[str, float]:
    """Per-feature PSI from the decision's drift section, wherever the analysis put it."""
    if isinstance(obj, Mapping):
        for key, val in obj.items():
            if str(key).lower() == "psi" and isinstance(val, Mapping):
                return {str(k): float(v) for k, v in val.items() if _num(v)}
            if str(key).lower() in ("features", "per_feature") and isinstance(val, Mapping):
                got = {str(k): float(v["psi"]) for k, v in val.items()
                       if isinstance(v, Mapping) and _num(v.get("psi"))}
                if got:
                    return got
        for val in obj.values():
            got = find_psi(val)
            if got:
                return got
    elif isinstance(obj, list):
        merged: dict[str, float] = {}  # FeatureDrift rows: worst variant per feature
        for val in obj:
            if isinstance(val, Mapping) and "feature" in val and _num(val.get("psi")):
                key = str(val["feature"])
                merged[key] = max(merged.get(key, float("-inf")), float(val["psi"]))
        return merged or next((g for v in obj if (g := find_psi(v))), {})
    return {}


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def summary(cfg: Config) -> dict[str, Any]:
    """Everything the report shows, from the stored step results (pure reads)."""
    gate = read_state(cfg, "gate") or {}
    outcome = read_state(cfg, "outcome") or {}
    canary = read_state(cfg, "canary") or {}
    decision = read_state(cfg, "decision") or canary.get("decision") or {}
    before = None if gate.get("bootstrap") else gate.get("champion")
    after = outcome.get("champion_after") or outcome.get("champion") or before
    if outcome.get("action") == "none" and gate.get("bootstrap"):
        after = gate.get("challenger")
    action = decision.get("action") or outcome.get("action") or "none"
    gate_reason = [{"code": "GATE", "message": gate.get("reason"), "blocking": True}] * bool(gate)
    return {"experiment_id": cfg.experiment.id, "model": cfg.registry.model_name,
            "challenger": gate.get("challenger"), "champion_before": before,
            "champion_after": after, "action": action, "gate": gate,
            "reasons": reason_dicts(decision.get("reasons")) or gate_reason,
            "steps": canary.get("steps", []), "stopped": canary.get("stopped"),
            "decision": decision, "training": training_summary(cfg),
            "refused": refused_summary(canary.get("steps", []))}


def training_summary(cfg: Config) -> list[dict[str, Any]]:
    """Per family: its best CV value, or why it failed (a family fails alone)."""
    import json

    from pipeline_components.training.runner import result_path

    out = []
    for family in cfg.training.families:
        path = result_path(cfg, family)
        if path.is_file():
            r = json.loads(path.read_text())
            out.append({"family": family, "failed": bool(r.get("failed")),
                        "error": r.get("error"), "best_value": r.get("best_value"),
                        "metric": r.get("metric")})
    return out


def refused_summary(steps: list[dict[str, Any]]) -> dict[str, int]:
    """Users the router refused during the canary, per reason, summed over the steps."""
    total: dict[str, int] = {}
    for step in steps:
        for why, n in ((step.get("simulation") or {}).get("refused") or {}).items():
            total[why] = total.get(why, 0) + int(n)
    return total


@functools.cache
def _templates() -> jinja2.Environment:
    """The report templates (``experiment/templates``): HTML autoescaped, Markdown verbatim."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("pipeline_components.experiment", "templates"),
        autoescape=jinja2.select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True,
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def markdown(s: Mapping[str, Any], per_variant: pd.DataFrame) -> str:
    """The Markdown summary (``templates/summary.md``)."""
    rows = [(str(v), int(r["n"]), float(r["mean"])) for v, r in per_variant.iterrows()]
    sent = sum(int((st.get("simulation") or {}).get("sent", 0)) for st in s.get("steps", []))
    refused = sorted((s.get("refused") or {}).items(), key=lambda kv: -kv[1])
    return _templates().get_template("summary.md").render(
        s=s, per_variant=rows, sent=sent, refused=refused,
        n_refused=sum(n for _, n in refused))


def html_page(s: Mapping[str, Any], md_text: str, figures: Mapping[str, str | None]) -> str:
    """The HTML report (``templates/report.html``); every value is escaped by the template."""
    return _templates().get_template("report.html").render(s=s, md_text=md_text, figures=figures)


def build_report(cfg: Config, *, log_to_mlflow: bool = True) -> dict[str, Any]:
    """Write ``<report.out_dir>/<experiment id>/report.html`` and ``summary.md``; log both."""
    s = summary(cfg)
    pred, joined = load_log(cfg)
    t0 = float(pred["ts"].min()) if not pred.empty else time.time()
    a = cfg.analysis
    curve = plots.cumulative_metric(joined, a.alpha, a.mde**2) if not joined.empty else (
        pd.DataFrame())
    per_variant = (joined.groupby("variant")["reward"].agg(n="size", mean="mean")
                   if not joined.empty else pd.DataFrame())
    figures = {
        "Primary metric per variant over time": plots.metric_over_time(curve, t0),
        "Lift of the challenger at each look (always-valid interval)": plots.lift_by_look(
            s["steps"]),
        "Traffic split over time": plots.traffic_split(pred, s["steps"], t0),
        "Latency distributions": plots.latency(pred),
        "Drift per feature": plots.drift(find_psi(s["decision"]), a.drift.psi_threshold),
    }
    md_text = markdown(s, per_variant)
    out_dir = Path(cfg.report.out_dir) / cfg.experiment.id
    out_dir.mkdir(parents=True, exist_ok=True)
    html_path, md_path = out_dir / "report.html", out_dir / "summary.md"
    html_path.write_text(html_page(s, md_text, figures))
    md_path.write_text(md_text)
    run_id = _log(cfg, html_path, md_path, s) if log_to_mlflow else None
    out = {"html": str(html_path), "markdown": str(md_path), "mlflow_run_id": run_id,
           "action": s["action"], "champion_before": s["champion_before"],
           "champion_after": s["champion_after"], "reasons": s["reasons"]}
    write_state(cfg, "report", out)
    return out


def _log(cfg: Config, html_path: Path, md_path: Path, s: Mapping[str, Any]) -> str:
    """Log both files to the experiment's report run (reused on re-runs: no duplicate runs)."""
    import mlflow

    from pipeline_components.tracking import configure_mlflow

    client = configure_mlflow(cfg)
    exp = client.get_experiment_by_name(cfg.tracking.experiment_name)
    found = client.search_runs(
        [exp.experiment_id], f"tags.`abx.report_for` = '{cfg.experiment.id}'", max_results=1
    ) if exp else []
    run_id = found[0].info.run_id if found else None
    with mlflow.start_run(run_id=run_id, run_name=f"report-{cfg.experiment.id}") as run:
        mlflow.set_tags({"abx.report_for": cfg.experiment.id, "abx.decision": s["action"],
                         "abx.champion_before": str(s["champion_before"]),
                         "abx.champion_after": str(s["champion_after"])})
        mlflow.log_artifact(str(html_path), artifact_path="report")
        mlflow.log_artifact(str(md_path), artifact_path="report")
        return str(run.info.run_id)
