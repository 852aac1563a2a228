"""`abx analyze` (the decision as tables, optionally JSON) and `abx plan` (sample size per arm)."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.console import Console
from rich.table import Table

from pipeline_components.cli._app import ParamsOpt, SetOpt, app, load
from pipeline_components.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from pipeline_components.analysis import Decision
    from pipeline_components.config import Config

# Wide enough for the tables when piped (CI logs, files); a terminal keeps its own width.
out = Console(width=None if sys.stdout.isatty() else 160)
_STYLE = {"promote": "bold green", "rollback": "bold red", "continue": "bold yellow"}


def _num(x: float | None, fmt: str = ".4g") -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, fmt)


def parse_weights(text: str) -> dict[str, float]:
    """``champion=0.9,challenger=0.1`` -> dict (ConfigError naming the bad item)."""
    weights = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = item.partition("=")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise ConfigError(f"--weights item {item!r}: expected NAME=WEIGHT, e.g. champion=0.9")
    return weights


def _frame(path: Path | None, default: Path) -> pd.DataFrame | None:
    import pandas as pd

    p = path or default
    if not p.is_file():
        if path is not None:
            raise ConfigError(f"{p}: file not found")
        return None
    return pd.read_parquet(p) if p.suffix in (".parquet", ".pq") else pd.read_csv(p)


def look_history(
    cfg: Config, look: int, text: str | None
) -> list[float] | dict[str, list[float]] | None:
    """Earlier looks' information fractions: --previous-fractions, else the canary's record.

    A group-sequential look after the first needs them (alpha is spent on the information the
    earlier looks really had); guessing equally spaced looks inflates alpha when looks bunch.
    """
    if text is not None:
        try:
            return [float(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise ConfigError(
                f"--previous-fractions {text!r}: expected numbers like 0.1,0.35") from None
    if cfg.analysis.method != "gst" or look == 1:
        return None
    from pipeline_components.experiment.canary import info_fractions
    from pipeline_components.experiment.state import read_state

    steps = [s for s in (read_state(cfg, "canary") or {}).get("steps", [])
             if int(s.get("look", 0)) < look]
    if not steps:
        raise ConfigError(f"--look {look} with analysis.method=gst: no earlier looks recorded "
                          "for this experiment; pass --previous-fractions")
    return info_fractions(steps)


def render(decision: Decision) -> None:
    """Print the decision, metrics, comparisons and reasons as rich tables."""
    d = decision
    out.print(f"[{_STYLE[d.action]}]{d.action.upper()}[/]"
              + (f" -> {d.winner}" if d.winner else "")
              + f"  (experiment {d.experiment_id}, look {d.look}, {d.method}, {d.primary_metric})")
    t = Table("variant", "units", "labelled", "requests", "pending", "primary", "errors",
              "p50 ms", "p99 ms", "log loss", "AUC", "ECE", title="Per-variant metrics")
    for col in t.columns:
        col.overflow = "fold"
    for m in d.metrics.values():
        q = m.quality
        t.add_row(m.variant, str(m.units), str(m.units_with_feedback), str(m.requests),
                  str(m.pending), _num(m.primary_mean), _num(m.error_rate, ".2%"),
                  _num(m.latency_p50, ".1f"), _num(m.latency_p99, ".1f"),
                  _num(q.log_loss if q else None), _num(q.auc if q else None, ".3f"),
                  _num(q.ece if q else None, ".3f"))
    out.print(t)
    c = Table("challenger", "test", "lift", "interval", "relative", "p", "p (Holm)",
              "CUPED var. red.", "guardrails", "verdict", title="Comparisons vs champion")
    for col in c.columns:
        col.overflow = "fold"
    for cmp in d.comparisons:
        e = cmp.effect
        c.add_row(cmp.variant, e.method, _num(e.lift, "+.4g"),
                  f"[{_num(e.ci[0], '+.4g')}, {_num(e.ci[1], '+.4g')}]", _num(e.rel_lift, "+.2%"),
                  _num(e.p_value, ".3g"), _num(cmp.p_adjusted, ".3g"),
                  _num(cmp.cuped.variance_reduction if cmp.cuped else None, ".1%"),
                  ", ".join(f"{g.name}:{g.status}" for g in cmp.guardrails),
                  f"[{_STYLE[cmp.verdict]}]{cmp.verdict}[/]")
    out.print(c)
    r = Table("code", "blocking", "message", title="Reasons")
    for reason in d.reasons:
        r.add_row(reason.code, "yes" if reason.blocking else "no", reason.message)
    out.print(r)


@app.command("analyze")
def analyze_cmd(
    params: ParamsOpt = "params.yaml",  # type: ignore[assignment]
    set_: SetOpt = None,
    look: Annotated[int, typer.Option("--look", min=1, help="Look number (gst).")] = 1,
    since: Annotated[float | None, typer.Option(help="SRM on units first seen at/after this "
                                                "unix time.")] = None,
    weights: Annotated[str | None, typer.Option(
        help="Expected split, e.g. champion=0.9,challenger=0.1 (default: serving.weights).")
    ] = None,
    covariates: Annotated[Path | None, typer.Option(help="CUPED covariates (default: the "
                                                    "holdout split).")] = None,
    reference: Annotated[Path | None, typer.Option(help="Drift reference (default: the train "
                                                   "split).")] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the decision JSON.")
    ] = None,
    fractions: Annotated[str | None, typer.Option(
        "--previous-fractions", help="gst: information fractions of the earlier looks, e.g. "
        "0.1,0.35 (default: the ones the canary recorded).")] = None,
    from_: Annotated[Path | None, typer.Option(
        "--from", help="Analyse a table of units, arms and outcomes (an experiment run "
        "elsewhere) instead of the prediction log; with --unit, --arm, --outcome.")] = None,
    unit: Annotated[str | None, typer.Option(help="--from: unit id column.")] = None,
    arm: Annotated[str | None, typer.Option(help="--from: arm column.")] = None,
    outcome: Annotated[str | None, typer.Option(help="--from: outcome column.")] = None,
    cluster: Annotated[str | None, typer.Option(help="--from: cluster column.")] = None,
    control: Annotated[str | None, typer.Option(help="--from: the control arm's value "
                                                "(default champion, else the first).")] = None,
    planned: Annotated[str | None, typer.Option(help="--from: planned split, e.g. 0.5,0.5 "
                                                "(control first) or a=0.5,b=0.5.")] = None,
) -> None:
    """Analyse the experiment in the prediction log (or a --from table) and print the decision."""
    from pipeline_components.analysis import analyze

    if from_ is not None:
        render_and_save(_analyze_table(params, set_, from_, unit, arm, outcome, cluster,
                                       control, planned, look, fractions), json_path)
        return
    cfg: Config = load(params, set_)
    feats = Path(cfg.features.out_dir)
    decision = analyze(
        cfg, expected_weights=parse_weights(weights) if weights else dict(cfg.serving.weights),
        look=look, srm_since_ts=since, covariates=_frame(covariates, feats / "holdout.parquet"),
        reference=_frame(reference, feats / "train.parquet"),
        previous_fractions=look_history(cfg, look, fractions),
    )
    render_and_save(decision, json_path)


def render_and_save(decision: Decision, json_path: Path | None) -> None:
    render(decision)
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(decision.to_json() + "\n")
        out.print(f"decision written to {json_path}")


def _analyze_table(
    params: Path, sets: list[str] | None, path: Path, unit: str | None, arm: str | None,
    outcome: str | None, cluster: str | None, control: str | None, planned: str | None,
    look: int, fractions: str | None = None,
) -> Decision:
    """`abx analyze --from`: the units table through the same analysis as the prediction log."""
    from pipeline_components.analysis import analyze_frames
    from pipeline_components.analysis.effects import CONTROL
    from pipeline_components.data import read_table
    from pipeline_components.units_table import frames_from_units, parse_planned

    if not (unit and arm and outcome):
        raise ConfigError("abx analyze --from: --unit, --arm and --outcome are required")
    extra = [f"analysis.cluster_column={cluster}"] if cluster else []
    cfg = load(params, [*(sets or []), *extra])
    df = read_table(path)
    preds, fb = frames_from_units(df, unit=unit, arm=arm, outcome=outcome, control=control,
                                  cluster=cluster, experiment_id=cfg.experiment.id,
                                  source=str(path))
    others = sorted(set(preds["variant"]) - {CONTROL})
    ctrl = str(control) if control else CONTROL
    shares = parse_planned(planned, [ctrl, *others]) if planned else {}
    weights = {(CONTROL if k == ctrl else k): v for k, v in shares.items()} or {
        a: 1.0 / (len(others) + 1) for a in [CONTROL, *others]}
    history = None
    if fractions is not None or (cfg.analysis.method == "gst" and look > 1):
        if fractions is None:
            raise ConfigError(f"--from with --look {look} and analysis.method=gst: pass "
                              "--previous-fractions (the earlier looks' information fractions)")
        history = look_history(cfg, look, fractions)
    return analyze_frames(cfg, preds, fb, expected_weights=weights, look=look,
                          previous_fractions=history)


@app.command("plan")
def plan_cmd(
    params: ParamsOpt = "params.yaml",  # type: ignore[assignment]
    set_: SetOpt = None,
    baseline: Annotated[float | None, typer.Option(help="Baseline rate (or mean).")] = None,
    mde: Annotated[float | None, typer.Option(help="Minimum detectable effect, absolute.")] = None,
    alpha: Annotated[float | None, typer.Option(help="Two-sided significance level.")] = None,
    power: Annotated[float | None, typer.Option(help="Power at the MDE.")] = None,
    ratio: Annotated[float, typer.Option(help="n_challenger / n_champion.")] = 1.0,
    sd: Annotated[float | None, typer.Option(help="Std. dev. (continuous metric).")] = None,
    design_effect: Annotated[float, typer.Option(
        help="Clusters: 1 + (units per cluster - 1) x ICC.")] = 1.0,
) -> None:
    """Sample size per arm for a baseline, MDE, alpha and power (defaults: params analysis.*)."""
    from pipeline_components.analysis import plan

    a = load(params, set_).analysis
    kind: Literal["binary", "continuous"] = "continuous" if sd is not None else "binary"
    try:
        p = plan(baseline if baseline is not None else a.baseline_rate, mde or a.mde,
                 alpha or a.alpha, power or a.power, ratio=ratio, metric_type=kind, sd=sd,
                 looks=a.max_looks, spending=a.gst_spending,
                 futility=None if a.gst_futility == "none" else a.gst_futility,
                 design_effect=design_effect)
    except ValueError as exc:
        raise ConfigError(f"abx plan: {exc}") from exc
    t = Table("design", "champion n", "challenger n", "total", title=(
        f"Sample size: baseline {p.baseline:g}, MDE {p.mde:g}, alpha {p.alpha:g}, "
        f"power {p.power:g} ({p.metric_type}, effect size {p.effect_size:.4f})"))
    t.add_row("fixed horizon", str(p.n_control), str(p.n_treatment),
              str(p.n_control + p.n_treatment))
    fut = "" if a.gst_futility == "none" else f", {a.gst_futility} futility"
    t.add_row(f"group-sequential max ({p.looks} looks{fut}, x{p.gst_inflation:.3f})",
              str(p.gst_n_control), str(p.gst_n_treatment),
              str(p.gst_n_control + p.gst_n_treatment))
    out.print(t)
