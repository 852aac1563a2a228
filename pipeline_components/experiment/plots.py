"""Report figures: matplotlib (Agg) figures -> base64 PNG strings for a self-contained HTML.

Each function takes plain frames/dicts and returns a data URI, or None when there is nothing to
draw, so the report can say "no data" instead of failing.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

COLORS = {"champion": "#1f77b4", "challenger": "#d62728"}


def _fig(width: float = 7.5, height: float = 3.2) -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), dpi=100)


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def cumulative_metric(
    joined: pd.DataFrame, alpha: float, tau2: float, points: int = 40
) -> pd.DataFrame:
    """Per variant, the running mean reward and its (1-alpha) confidence sequence over time.

    ``joined`` has columns ts, variant, reward (one row per served, labelled request).
    """
    from pipeline_components.analysis.sequential import halfwidth

    rows = []
    for variant, part in joined.sort_values("ts").groupby("variant"):
        r = part["reward"].to_numpy(dtype=float)
        ts = part["ts"].to_numpy(dtype=float)
        n = np.arange(1, len(r) + 1)
        mean = np.cumsum(r) / n
        var = np.maximum(np.cumsum(r**2) / n - mean**2, 1e-12) * n / np.maximum(n - 1, 1)
        hw = halfwidth(var / n, tau2, alpha)
        idx = np.unique(np.linspace(0, len(r) - 1, min(points, len(r))).astype(int))
        for i in idx:
            rows.append({"variant": variant, "ts": ts[i], "n": int(n[i]), "mean": mean[i],
                         "lo": mean[i] - hw[i], "hi": mean[i] + hw[i]})
    return pd.DataFrame(rows)


def metric_over_time(curve: pd.DataFrame, t0: float) -> str | None:
    if curve.empty:
        return None
    fig, ax = _fig()
    for variant, part in curve.groupby("variant"):
        x = part["ts"] - t0
        color = COLORS.get(str(variant))
        ax.plot(x, part["mean"], label=f"{variant} (n={int(part['n'].max())})", color=color)
        ax.fill_between(x, part["lo"].clip(0, 1), part["hi"].clip(0, 1), alpha=0.2, color=color)
    ax.set(xlabel="seconds since start", ylabel="mean reward per user",
           title="Primary metric over time with the always-valid confidence sequence")
    ax.legend(loc="lower right")
    return _png(fig)


def traffic_split(pred: pd.DataFrame, steps: Sequence[Mapping[str, Any]], t0: float) -> str | None:
    if pred.empty:
        return None
    fig, ax = _fig()
    ts = pred["ts"].to_numpy(dtype=float) - t0
    bins = np.linspace(0, max(ts.max(), 1e-3), 30)
    challenger = (pred["variant"] == "challenger").to_numpy()
    total, _ = np.histogram(ts, bins)
    chal, _ = np.histogram(ts[challenger], bins)
    share = np.divide(chal, total, out=np.full(len(total), np.nan), where=total > 0)
    ax.step(bins[:-1], share, where="post", label="observed challenger share", color="#d62728")
    for s in steps:
        ax.hlines(s["share"], s["started_at"] - t0, s["ended_at"] - t0, colors="k",
                  linestyles="dashed")
    ax.set(xlabel="seconds since start", ylabel="challenger share of requests", ylim=(0, 1.05),
           title="Traffic split over time (dashed: configured ramp step)")
    ax.legend(loc="upper left")
    return _png(fig)


def latency(pred: pd.DataFrame) -> str | None:
    if pred.empty or "latency_ms" not in pred:
        return None
    fig, ax = _fig()
    hi = float(np.nanpercentile(pred["latency_ms"], 99.5)) or 1.0
    bins = np.linspace(0, hi, 40)
    for variant, part in pred.groupby("variant"):
        lat = part["latency_ms"].to_numpy(dtype=float)
        p99 = np.percentile(lat, 99)
        ax.hist(lat, bins=bins, alpha=0.5, density=True, color=COLORS.get(str(variant)),
                label=f"{variant}: p50 {np.median(lat):.2f} ms, p99 {p99:.2f} ms")
    ax.set(xlabel="router latency (ms)", ylabel="density", title="Latency per variant")
    ax.legend()
    return _png(fig)


def drift(psi: Mapping[str, float], threshold: float) -> str | None:
    vals = {k: float(v) for k, v in psi.items() if v is not None and not math.isnan(float(v))}
    if not vals:
        return None
    fig, ax = _fig(height=max(2.0, 0.35 * len(vals) + 1))
    names = sorted(vals, key=vals.get)  # type: ignore[arg-type]
    ax.barh(names, [vals[n] for n in names],
            color=["#d62728" if vals[n] > threshold else "#7f7f7f" for n in names])
    ax.axvline(threshold, color="k", linestyle="dashed", label=f"threshold {threshold}")
    ax.set(xlabel="PSI (training vs live traffic)", title="Drift per feature")
    ax.legend()
    return _png(fig)


def lift_by_look(steps: Sequence[Mapping[str, Any]]) -> str | None:
    """The primary-metric lift and its interval as the analysis saw it at each ramp step."""
    pts = []
    for step in steps:
        comps = (step.get("decision") or {}).get("comparisons") or []
        eff = (comps[0].get("effect") if comps else None) or {}
        ci = eff.get("ci") or (None, None)
        if _finite(eff.get("lift")) and _finite(ci[0]) and _finite(ci[1]):
            pts.append((step["look"], step["share"], eff["lift"], ci[0], ci[1]))
    if not pts:
        return None
    fig, ax = _fig()
    looks = [p[0] for p in pts]
    lift = np.array([p[2] for p in pts])
    ax.errorbar(looks, lift, yerr=[lift - [p[3] for p in pts], [p[4] for p in pts] - lift],
                fmt="o", capsize=4, color="#d62728")
    ax.axhline(0.0, color="k", linewidth=0.8)
    ax.set_xticks(looks, [f"look {p[0]}\n{p[1]:.0%}" for p in pts])
    ax.set(ylabel="challenger - champion (reward)", title="Lift per look with its interval")
    return _png(fig)


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and math.isfinite(float(v))
