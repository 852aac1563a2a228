"""The experiment report: one self-contained HTML file (plots embedded) and a Markdown summary.

Built from what the run stored (gate, canary steps, decision, outcome JSON under the experiment
folder) and the prediction/feedback log, so it can be rebuilt at any time with ``abx report``.
Both files are logged to MLflow (a run named ``report-<experiment id>``) and their paths returned.
"""

from __future__ import annotations

import html
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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
            "decision": decision}


def markdown(s: Mapping[str, Any], per_variant: pd.DataFrame) -> str:
    lines = [f"# abx experiment `{s['experiment_id']}`", "",
             f"- model: `{s['model']}`, challenger: v{s['challenger']}",
             f"- champion before: v{s['champion_before']}, after: v{s['champion_after']}",
             f"- decision: **{s['action']}** (canary stopped: {s['stopped'] or 'n/a'}, "
             f"{len(s['steps'])} look(s))", "", "## Reasons", ""]
    lines += [f"- `{r['code']}`{' (blocking)' if r['blocking'] else ''}: {r['message']}"
              for r in s["reasons"]] or ["- none"]
    if not per_variant.empty:
        lines += ["", "## Per variant (served, labelled requests)", "",
                  "| variant | users | mean reward |", "|---|---|---|"]
        lines += [f"| {v} | {int(r['n'])} | {r['mean']:.4f} |" for v, r in per_variant.iterrows()]
    return "\n".join(lines) + "\n"


def html_page(s: Mapping[str, Any], md_text: str, figures: Mapping[str, str | None]) -> str:
    esc = html.escape
    rows = "".join(
        f"<tr><td><code>{esc(str(r['code']))}</code></td><td>{'yes' if r['blocking'] else ''}"
        f"</td><td>{esc(str(r['message']))}</td></tr>" for r in s["reasons"])
    figs = "".join(
        f"<h2>{esc(title)}</h2>" + (f'<img alt="{esc(title)}" src="{uri}">' if uri
                                    else "<p><em>no data</em></p>")
        for title, uri in figures.items())
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>abx {esc(s['experiment_id'])}</title><style>body{{font-family:sans-serif;"
        "max-width:60em;margin:2em auto}}td,th{border:1px solid #ccc;padding:4px}"
        "table{border-collapse:collapse}img{max-width:100%}</style></head><body>"
        f"<h1>Experiment {esc(s['experiment_id'])}: <u>{esc(str(s['action']))}</u></h1>"
        f"<p>Model <code>{esc(s['model'])}</code>: champion v{esc(str(s['champion_before']))}"
        f" &rarr; v{esc(str(s['champion_after']))}; challenger v{esc(str(s['challenger']))}.</p>"
        f"<h2>Decision and reasons</h2><table><tr><th>code</th><th>blocking</th><th>message"
        f"</th></tr>{rows}</table>{figs}<h2>Summary</h2><pre>{esc(md_text)}</pre>"
        "</body></html>")


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
