"""Primary-metric comparisons: summaries per arm, CUPED, the configured test, Holm for A/B/n."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pandas as pd
from statsmodels.stats.multitest import multipletests

from pipeline_components.aliases import CHAMPION
from pipeline_components.analysis import codes
from pipeline_components.analysis.clusters import cluster_robust_adjusted, cluster_robust_arms
from pipeline_components.analysis.cuped import CupedResult, cuped
from pipeline_components.analysis.decision import Comparison
from pipeline_components.analysis.fixed import (
    EffectResult,
    information,
    proportion_test,
    welch_test,
)
from pipeline_components.analysis.gst import gst_test
from pipeline_components.analysis.phases import stratified_adjusted, stratified_arms
from pipeline_components.analysis.planning import fixed_information
from pipeline_components.analysis.sequential import msprt_test
from pipeline_components.analysis.summaries import RegressionSummary, SampleMean
from pipeline_components.config import Config
from pipeline_components.errors import AnalysisError

CONTROL = CHAMPION  # the control arm of every comparison


def pre_period_covariates(covariates: pd.DataFrame | None, cfg: Config) -> pd.DataFrame | None:
    """``unit_id, x`` from the caller's pre-period frame (``data.id_column``,
    ``data.covariate_column``), or None when it is missing or lacks those columns."""
    id_col, cov_col = cfg.data.id_column, cfg.data.covariate_column
    if covariates is None or cov_col is None or not {id_col, cov_col} <= set(covariates.columns):
        return None
    cov = covariates[[id_col, cov_col]].dropna()
    return pd.DataFrame({"unit_id": cov[id_col].astype(str).to_numpy(),
                         "x": cov[cov_col].astype(float).to_numpy()})


def choose_covariate(
    cfg: Config, unit_values: pd.DataFrame, pre_period: pd.DataFrame | None,
    cupac: Callable[[], pd.DataFrame | None],
) -> tuple[pd.DataFrame | None, str]:
    """The CUPED covariate per ``analysis.cuped_covariate`` and its name for the method label.

    ``pre_period``: the caller's pre-experiment metric; ``cupac``: the champion's prediction
    (``cupac.py``, built lazily: it scores every unit); ``auto``: the pre-period metric when it
    matches units, else CUPAC when a champion scorer was given. None: no adjustment.
    """
    a = cfg.analysis
    if not a.cuped:
        return None, ""
    if a.cuped_covariate in ("auto", "pre_period"):
        pre = attach_covariate(unit_values, pre_period)
        if pre is not None or a.cuped_covariate == "pre_period":
            return pre, "cuped"
    return attach_covariate(unit_values, cupac()), "cupac"


def attach_covariate(unit_values: pd.DataFrame, cov: pd.DataFrame | None) -> pd.DataFrame | None:
    """unit_values plus an ``x`` column (from ``unit_id, x`` rows), or None when fewer than two
    units match. Units without a covariate get the mean of the matched ones (left unadjusted)."""
    if cov is None or cov.empty:
        return None
    x = unit_values["unit_id"].map(cov.drop_duplicates("unit_id").set_index("unit_id")["x"])
    if x.notna().sum() < 2:
        return None
    return unit_values.assign(x=x.fillna(x.mean()))


def _is_binary(values: pd.Series) -> bool:
    return bool(values.isin([0.0, 1.0]).all())


History = list[float] | dict[str, list[float]] | None


def fractions_for(history: History, name: str) -> list[float] | None:
    """The recorded information fractions of challenger ``name``'s earlier looks.

    A dict maps each challenger to its own history (A/B/n: every comparison has its own
    information); a plain list is the history of a single challenger.
    """
    if isinstance(history, dict):
        return list(history.get(name, []))
    return None if history is None else list(history)


def primary_test(
    cfg: Config, c: SampleMean, t: SampleMean, binary: bool, m: int, look: int,
    previous_fractions: list[float] | None, name: str, max_looks: int | None = None,
    repeated_p: bool = True,
) -> EffectResult:
    """The configured test of one challenger's primary metric (``m`` challengers in all).

    ``benchmarks/stats_sim`` calls this very function on simulated summaries, so the Monte Carlo
    figures are those of the production decision (``repeated_p=False`` only skips the gst
    repeated p-value, which is shown, never decided on).
    """
    a = cfg.analysis
    names = (CONTROL, name)
    if a.method == "msprt":
        return msprt_test(c, t, a.alpha, (a.msprt_tau or a.mde) ** 2, names)
    if a.method == "gst":
        if previous_fractions is None and look > 1:
            raise AnalysisError(
                f"analysis.method=gst at look {look}: the information fractions of the earlier "
                "looks are needed (previous_fractions, which the canary records; "
                "`abx analyze --previous-fractions`); equally spaced looks are not assumed")
        return gst_test(
            c, t, alpha=a.alpha / m, power=a.power,
            fixed_info=fixed_information(a.mde, a.alpha / m, a.power), look=look,
            max_looks=max_looks or a.max_looks, kind=a.gst_spending,
            previous_fractions=previous_fractions,
            futility=None if a.gst_futility == "none" else a.gst_futility, names=names,
            repeated_p=repeated_p,
        )
    return fixed_at_horizon(cfg, c, t, binary, names)


def fixed_at_horizon(
    cfg: Config, c: SampleMean, t: SampleMean, binary: bool, names: tuple[str, str]
) -> EffectResult:
    """The fixed-horizon test, which decides only once its planned information is reached.

    Before the horizon the estimate and interval are shown but nothing is significant: a fixed
    test read at every look would be naive peeking (~20% false positives at 10 looks).
    """
    a = cfg.analysis
    res = (proportion_test if binary else welch_test)(c, t, a.alpha, names)
    if res.reason:
        return res
    info = information(c, t)
    needed = fixed_information(a.mde, a.alpha, a.power)
    at_horizon = info >= needed
    return replace(res, significant=res.significant and at_horizon, details={
        **res.details, "final": bool(at_horizon), "info_fraction": min(info / needed, 1.0)})


def compare_all(
    cfg: Config, unit_values: pd.DataFrame, challengers: list[str], *, look: int,
    with_x: pd.DataFrame | None = None, covariate_label: str = "cuped",
    previous_fractions: History = None, max_looks: int | None = None,
) -> list[Comparison]:
    """One Comparison per challenger against the champion, Holm-adjusted across challengers.

    ``with_x``: ``unit_values`` plus the CUPED covariate ``x`` (``choose_covariate``), labelled
    ``covariate_label`` in the method name (``gst+cuped``, ``gst+cupac``).
    """
    clustered = "cluster" in unit_values.columns  # cluster-robust variance
    phased = "phase" in unit_values.columns and not clustered  # post-stratified on ramp steps
    binary = (cfg.analysis.metric_type == "binary" and _is_binary(unit_values["value"])
              and not clustered and not phased)
    ctrl = unit_values[unit_values["variant"] == CONTROL]["value"]
    out = []
    for name in challengers:
        treat = unit_values[unit_values["variant"] == name]["value"]
        c, t = SampleMean.from_values(ctrl), SampleMean.from_values(treat)
        if clustered:
            c, t = cluster_robust_arms(unit_values, name)
        elif phased:
            c, t = stratified_arms(unit_values, name)
        fixed_ref = (proportion_test if binary else welch_test)(c, t, cfg.analysis.alpha,
                                                              (CONTROL, name))
        adj = _cuped_for(with_x, name, (c, t), clustered, phased)
        tc, tt = c, t
        use_adj = adj is not None and adj.control is not None and adj.treatment is not None
        if adj is not None and adj.control is not None and adj.treatment is not None:
            tc, tt = adj.control, adj.treatment
        effect = primary_test(cfg, tc, tt, binary and not use_adj, len(challengers), look,
                                fractions_for(previous_fractions, name), name, max_looks)
        if use_adj:
            effect = replace(effect, method=f"{effect.method}+{covariate_label}")
        out.append(Comparison(variant=name, effect=effect, fixed=fixed_ref, cuped=adj))
    return holm(out, cfg.analysis.alpha, cfg.analysis.method)


def _cuped_for(with_x: pd.DataFrame | None, name: str, plain: tuple[SampleMean, SampleMean],
               clustered: bool, phased: bool) -> CupedResult | None:
    """CUPED of one comparison: cluster-robust with clusters, per phase with ramp phases
    (``plain``: the unadjusted arms of the same design, for the variance reduction)."""
    if with_x is None:
        return None
    if clustered or phased:
        rows = with_x[with_x["variant"].isin([CONTROL, name])]
        if min((rows["variant"] == CONTROL).sum(), (rows["variant"] == name).sum()) < 2:
            return None
        if not rows["x"].var() > 0:
            return CupedResult(float("nan"), 0.0, None, None, codes.NO_COVARIATE)
        theta, c, t = (cluster_robust_adjusted if clustered else stratified_adjusted)(rows, name)
        before = sum(s.variance / s.n for s in plain)
        after = c.variance / c.n + t.variance / t.n
        return CupedResult(theta, 1.0 - after / before if before > 0 else 0.0, c, t)
    arms = []
    for v in (CONTROL, name):
        rows = with_x[with_x["variant"] == v]
        arms.append(RegressionSummary.from_values(rows["value"], rows["x"]))
    res = cuped(arms[0], arms[1])
    return res if res.reason != codes.NOT_ENOUGH_DATA else None


def holm(comparisons: list[Comparison], alpha: float, method: str) -> list[Comparison]:
    """Holm's step-down adjustment of the p-values (statsmodels); gst uses alpha/m bounds."""
    ok = [i for i, c in enumerate(comparisons) if c.effect.reason is None]
    if not ok:
        return comparisons
    out = list(comparisons)
    if method == "gst":
        for i in ok:
            out[i] = replace(out[i], p_adjusted=min(1.0, out[i].effect.p_value * len(comparisons)))
        return out
    pvals = np.array([comparisons[i].effect.p_value for i in ok])
    if len(ok) == 1:  # Holm over one p-value is the p-value (multipletests costs a gc.collect)
        reject, p_adj = pvals <= alpha, pvals
    else:
        reject, p_adj, _, _ = multipletests(pvals, alpha=alpha, method="holm")
    for i, rej, pa in zip(ok, reject, p_adj, strict=True):
        # a fixed-horizon test may only decide at its horizon (``fixed_at_horizon``)
        allowed = method != "fixed" or bool(comparisons[i].effect.details.get("final"))
        eff = replace(out[i].effect, significant=bool(rej) and allowed)
        out[i] = replace(out[i], effect=eff, p_adjusted=float(pa))
    return out
