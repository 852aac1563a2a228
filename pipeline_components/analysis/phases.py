"""Ramps analysed by phase: the effect among units assigned within each ramp step, and combined.

A canary ramp changes the weights between steps while traffic changes over days, so pooling the
steps under "first variant per unit" mixes arms whose units came from different days in different
proportions (Simpson's paradox: each step can favour the challenger while the pooled difference
does not). Here each phase (units whose first request falls in [start_k, start_{k+1})) gets its
own difference of means (Welch), and the phases are combined with inverse-variance weights (the
stratified estimate, free of the mixing). Both are shown in the decision and the report; a pooled
and a stratified estimate of opposite sign are a ``PHASE_MIX`` note.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from pipeline_components.aliases import CHAMPION as CONTROL
from pipeline_components.analysis.fixed import welch_test
from pipeline_components.analysis.summaries import SampleMean


@dataclass(frozen=True)
class PhaseEffect:
    """One challenger's effect among the units assigned in one phase (``phase`` -1: combined)."""

    variant: str
    phase: int
    start_ts: float
    n_control: int
    n_treatment: int
    lift: float
    ci: tuple[float, float]
    variance: float


def phase_effects(
    assignment: pd.DataFrame, unit_values: pd.DataFrame, starts: Sequence[float],
    challengers: Sequence[str], alpha: float,
) -> list[PhaseEffect]:
    """Per-phase Welch differences and their inverse-variance combination, per challenger."""
    edges = np.asarray(sorted(starts), dtype=float)
    if edges.size < 2:
        return []
    first = assignment.set_index("unit_id")["first_ts"]
    phase = np.searchsorted(edges, unit_values["unit_id"].map(first).to_numpy(float),
                            side="right") - 1
    vals = unit_values.assign(phase=phase)
    out: list[PhaseEffect] = []
    z = float(stats.norm.isf(alpha / 2))
    for name in challengers:
        parts = []
        for k, start in enumerate(edges):
            rows = vals[vals["phase"] == k]
            c = SampleMean.from_values(rows.loc[rows["variant"] == CONTROL, "value"])
            t = SampleMean.from_values(rows.loc[rows["variant"] == name, "value"])
            res = welch_test(c, t, alpha, (CONTROL, name))
            if res.reason is None:
                var = ((res.ci[1] - res.ci[0]) / 2 / float(stats.t.ppf(1 - alpha / 2,
                                                                        res.details["df"]))) ** 2
                parts.append(PhaseEffect(name, k, float(start), c.n, t.n, res.lift, res.ci, var))
        out += parts
        if len(parts) > 1:
            w = np.array([1 / p.variance for p in parts])
            lift = float(np.dot(w, [p.lift for p in parts]) / w.sum())
            hw = z * math.sqrt(1 / w.sum())
            out.append(PhaseEffect(name, -1, float(edges[0]), sum(p.n_control for p in parts),
                                   sum(p.n_treatment for p in parts), lift,
                                   (lift - hw, lift + hw), float(1 / w.sum())))
    return out


def tag_phases(unit_values: pd.DataFrame, assignment: pd.DataFrame,
               starts: Sequence[float]) -> pd.DataFrame:
    """unit_values plus the ``phase`` (ramp step) in which each unit was first seen."""
    edges = np.asarray(sorted(starts), dtype=float)
    first = unit_values["unit_id"].map(assignment.set_index("unit_id")["first_ts"])
    return unit_values.assign(phase=np.maximum(
        np.searchsorted(edges, first.to_numpy(float), side="right") - 1, 0))


def stratified_adjusted(values: pd.DataFrame, name: str) -> tuple[float, SampleMean, SampleMean]:
    """CUPED per phase, then post-stratified: (mean theta, champion, ``name``).

    Within each phase k the effect is the OLS treatment coefficient of value ~ 1 + T + x
    (theta_k estimated in that phase: traffic and the covariate's relation to the metric move
    between ramp steps) with its HC1 variance (``clusters.robust_ols`` with each unit its own
    group); each arm's phase mean is adjusted, mean_ak - theta_k (mean x_ak - mean x_k), and the
    arms are combined with the phases' shares w_k as in ``stratified_arms``, so the difference is
    sum_k w_k beta_k with variance sum_k w_k^2 V_k.
    """
    from pipeline_components.analysis.clusters import robust_ols

    rows = values[values["variant"].isin([CONTROL, name])]
    size = rows.groupby(["phase", "variant"]).size().unstack(fill_value=0)
    keep = [k for k in size.index if min(size.loc[k].get(CONTROL, 0),
                                         size.loc[k].get(name, 0)) >= 2]
    if not keep:
        return (0.0, *stratified_arms(values, name))
    total = float(size.loc[keep].sum(axis=1).sum())
    acc = {a: [0, 0.0, 0.0] for a in (CONTROL, name)}  # n, weighted mean, var of the mean
    theta_w = 0.0
    for k in keep:
        part = rows[rows["phase"] == k]
        y, x = part["value"].to_numpy(float), part["x"].to_numpy(float)
        treat = (part["variant"] == name).to_numpy()
        w = len(part) / total
        xk = x if np.ptp(x) > 0 else None
        _, theta, psi, cf = robust_ols(y, treat, xk, part["unit_id"].to_numpy())
        theta_w += w * theta
        adj = y - theta * (x - x.mean())
        for a, m in ((CONTROL, ~treat), (name, treat)):
            acc[a][0] += int(m.sum())
            acc[a][1] += w * float(adj[m].mean())
            acc[a][2] += w**2 * cf * float(np.square(psi[m]).sum())
    out = [SampleMean(int(n), mean * n, float("nan"), centered_ss=var * n * (n - 1))
           for n, mean, var in (acc[CONTROL], acc[name])]
    return theta_w, out[0], out[1]


def stratified_arms(values: pd.DataFrame, name: str) -> tuple[SampleMean, SampleMean]:
    """Champion and ``name`` summaries post-stratified on the phase: each arm's mean is
    sum_k w_k mean_{arm,k} with the phases' shares w_k of all units (both arms), and its
    variance/n is sum_k w_k^2 s^2_{arm,k}/n_{arm,k}. Phases missing an arm are left out."""
    rows = values[values["variant"].isin([CONTROL, name])]
    g = rows.groupby(["phase", "variant"])["value"].agg(["size", "mean", "var"]).unstack()
    g = g[(g["size"].fillna(0) >= 2).all(axis=1)] if not g.empty else g
    if g.empty or CONTROL not in g["size"] or name not in g["size"]:
        return (SampleMean.from_values(rows.loc[rows["variant"] == CONTROL, "value"]),
                SampleMean.from_values(rows.loc[rows["variant"] == name, "value"]))
    w = g["size"].sum(axis=1) / g["size"].sum(axis=1).sum()
    out = []
    for arm in (CONTROL, name):
        n = int(g["size"][arm].sum())
        mean = float((w * g["mean"][arm]).sum())
        var_mean = float((w**2 * g["var"][arm] / g["size"][arm]).sum())
        out.append(SampleMean(n, mean * n, float("nan"), centered_ss=var_mean * n * (n - 1)))
    return out[0], out[1]
