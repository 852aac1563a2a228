"""Cluster-randomised experiments: cluster-robust variance (= statsmodels' cluster OLS), SRM on
clusters, and a plan that pays the design effect."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from pipeline_components.analysis import analyze_frames, codes
from pipeline_components.analysis.clusters import cluster_robust_arms
from pipeline_components.analysis.planning import plan
from pipeline_components.analysis.testing import SimSpec, simulate_log
from pipeline_components.config import Config

HALF = {"champion": 0.5, "challenger": 0.5}


def _cluster_frame(seed: int, n_clusters: int = 40) -> pd.DataFrame:
    """Units in regions; whole regions are randomised; a strong region effect (ICC ~0.3)."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(20, 200, n_clusters)
    arm = rng.permutation(np.arange(n_clusters) % 2)
    region = np.repeat(np.arange(n_clusters), sizes)
    value = rng.normal(0, 0.65, n_clusters)[region] + rng.normal(0, 1, sizes.sum())
    return pd.DataFrame({"unit_id": [f"u{i}" for i in range(sizes.sum())],
                         "variant": np.where(arm[region] == 1, "challenger", "champion"),
                         "value": value, "cluster": region.astype(str)})


def test_cluster_robust_variance_matches_statsmodels() -> None:
    df = _cluster_frame(0)
    c, t = cluster_robust_arms(df, "challenger")
    var = c.variance / c.n + t.variance / t.n
    x = sm.add_constant((df["variant"] == "challenger").astype(float).to_numpy())
    fit = sm.OLS(df["value"].to_numpy(), x).fit(cov_type="cluster",
                                                 cov_kwds={"groups": df["cluster"].astype(int)})
    assert t.mean - c.mean == pytest.approx(fit.params[1], abs=1e-12)
    assert var == pytest.approx(fit.bse[1] ** 2, rel=1e-10)
    naive = df.groupby("variant")["value"].agg(lambda v: v.var(ddof=1) / v.size).sum()
    assert var > 4 * naive  # the unit-level interval would be > 2x too narrow


def _log_from(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A prediction log whose features carry the region, and the unit-level reward."""
    preds = pd.DataFrame({
        "ts": np.arange(len(df), dtype=float), "request_id": [f"r{i}" for i in range(len(df))],
        "unit_id": df["unit_id"], "variant": df["variant"], "prediction": 0.5,
        "latency_ms": 10.0, "status": "ok", "served": True,
        "features": [{"region": r} for r in df["cluster"]]})
    fb = pd.DataFrame({"ts": preds["ts"] + 1, "request_id": preds["request_id"],
                       "unit_id": df["unit_id"], "outcome": 1.0, "reward": df["value"]})
    return preds, fb


def test_cluster_randomised_aa_uses_clusters(cfg_with: Callable[..., Config]) -> None:
    # A/A across 40 regions: unit-level analysis flags SRM (regions differ in size) and gives an
    # interval ~2.5x too narrow; with analysis.cluster_column the split is checked on regions
    # and the interval is cluster-robust.
    df = _cluster_frame(1)
    preds, fb = _log_from(df)
    kw = {"metric_type": "continuous", "cuped": False, "method": "fixed", "mde": 0.5}
    flat = analyze_frames(cfg_with(**kw), preds, fb, expected_weights=HALF)
    clus = analyze_frames(cfg_with(cluster_column="region", **kw), preds, fb,
                          expected_weights=HALF)
    assert codes.SRM in flat.codes()
    assert codes.SRM not in clus.codes() and clus.srm is not None
    assert sum(clus.srm.observed.values()) == 40
    w_flat = np.diff(flat.comparisons[0].effect.ci)[0]
    w_clus = np.diff(clus.comparisons[0].effect.ci)[0]
    assert w_clus > 2 * w_flat


def test_plan_pays_the_design_effect() -> None:
    base = plan(0.1, 0.01)
    clustered = plan(0.1, 0.01, design_effect=2.5)
    assert clustered.n_control == pytest.approx(2.5 * base.n_control, abs=2)
    with pytest.raises(ValueError, match="design_effect"):
        plan(0.1, 0.01, design_effect=0.5)


def test_unit_randomised_log_is_unchanged_without_clusters(cfg_with: Callable[..., Config]) -> None:
    log = simulate_log(SimSpec(n_units=600))
    cfg = cfg_with()
    a = analyze_frames(cfg, log.predictions, log.feedback, expected_weights=HALF)
    assert a.comparisons[0].effect.method == cfg.analysis.method  # no cluster column, no CUPED


@pytest.mark.parametrize("covariate", [False, True])
def test_clustered_welch_takes_cluster_degrees_of_freedom(covariate: bool) -> None:
    # 12 regions: statsmodels' cluster-robust t has G - 1 = 11 df, not the ~1,000 units' Welch df
    from pipeline_components.analysis.clusters import cluster_robust_adjusted
    from pipeline_components.analysis.fixed import welch_test

    df = _cluster_frame(3, n_clusters=12)
    df = df.assign(x=df["value"] * 0.5 + np.random.default_rng(4).normal(0, 1, len(df)))
    _, c, t = cluster_robust_adjusted(df, "challenger", covariate=covariate)
    res = welch_test(c, t, 0.05)
    cols = [np.ones(len(df)), (df["variant"] == "challenger").astype(float).to_numpy()]
    design = np.column_stack(cols + ([df["x"].to_numpy()] if covariate else []))
    fit = sm.OLS(df["value"].to_numpy(), design).fit(
        cov_type="cluster", cov_kwds={"groups": df["cluster"].astype(int)}, use_t=True)
    assert res.details["df"] == 11
    assert res.p_value == pytest.approx(fit.pvalues[1], rel=1e-9)
    assert res.ci == pytest.approx(tuple(fit.conf_int(0.05)[1]), rel=1e-9)
