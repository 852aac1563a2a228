"""CUPED with clusters (cluster-robust OLS with the covariate) and with ramp phases (CUPED per
phase, post-stratified), checked against statsmodels' OLS fits on the raw units."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from pipeline_components.analysis import analyze_frames
from pipeline_components.analysis.clusters import cluster_robust_adjusted
from pipeline_components.analysis.phases import stratified_adjusted
from pipeline_components.config import Config

HALF = {"champion": 0.5, "challenger": 0.5}


def _units(seed: int, n_clusters: int = 40, cluster_randomised: bool = True) -> pd.DataFrame:
    """Units in regions with a region effect, a covariate that predicts the value (rho ~0.7)."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(20, 120, n_clusters)
    region = np.repeat(np.arange(n_clusters), sizes)
    n = int(sizes.sum())
    arm = (rng.permutation(np.arange(n_clusters) % 2)[region] if cluster_randomised
           else rng.integers(0, 2, n))
    x = rng.normal(5.0, 2.0, n) + rng.normal(0, 1, n_clusters)[region]
    value = 0.8 * x + rng.normal(0, 0.6, n_clusters)[region] + rng.normal(0, 1.5, n) + 0.1 * arm
    return pd.DataFrame({"unit_id": [f"u{i}" for i in range(n)],
                         "variant": np.where(arm == 1, "challenger", "champion"),
                         "value": value, "x": x, "cluster": region.astype(str),
                         "phase": rng.choice(3, n, p=[0.2, 0.3, 0.5])})


def _ols(df: pd.DataFrame, **fit: object) -> sm.regression.linear_model.RegressionResults:
    design = np.column_stack([np.ones(len(df)), (df["variant"] == "challenger").astype(float),
                              df["x"].to_numpy()])
    return sm.OLS(df["value"].to_numpy(), design).fit(**fit)


@pytest.mark.parametrize("cluster_randomised", [True, False])
def test_cuped_with_clusters_is_cluster_robust_ols_with_the_covariate(
        cluster_randomised: bool) -> None:
    df = _units(0, cluster_randomised=cluster_randomised)
    theta, c, t = cluster_robust_adjusted(df, "challenger")
    fit = _ols(df, cov_type="cluster", cov_kwds={"groups": df["cluster"].astype(int)})
    assert t.mean - c.mean == pytest.approx(fit.params[1], rel=1e-10, abs=1e-12)
    assert theta == pytest.approx(fit.params[2], rel=1e-10)
    assert c.variance / c.n + t.variance / t.n == pytest.approx(fit.bse[1] ** 2, rel=1e-10)


def test_cuped_per_phase_is_ols_with_the_covariate_in_each_phase() -> None:
    df = _units(1, cluster_randomised=False).drop(columns="cluster")
    theta, c, t = stratified_adjusted(df, "challenger")
    w = df.groupby("phase").size() / len(df)
    fits = {k: _ols(g, cov_type="HC1") for k, g in df.groupby("phase")}
    assert t.mean - c.mean == pytest.approx(sum(w[k] * f.params[1] for k, f in fits.items()),
                                            rel=1e-10)
    assert c.variance / c.n + t.variance / t.n == pytest.approx(
        sum(w[k] ** 2 * f.bse[1] ** 2 for k, f in fits.items()), rel=1e-10)
    assert theta == pytest.approx(sum(w[k] * f.params[2] for k, f in fits.items()), rel=1e-10)


def _log(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, list[float]]:
    """A prediction log (phase = when the unit arrived, region in the features), feedback, the
    pre-period covariate frame and the phase starts."""
    ts = df["phase"].to_numpy() * 1000.0 + np.arange(len(df)) * 1e-3
    preds = pd.DataFrame({
        "ts": ts, "request_id": [f"r{i}" for i in range(len(df))], "unit_id": df["unit_id"],
        "variant": df["variant"], "prediction": 0.5, "latency_ms": 10.0, "status": "ok",
        "served": True, "features": [{"region": r} for r in df["cluster"]]})
    fb = pd.DataFrame({"ts": ts + 1, "request_id": preds["request_id"], "unit_id": df["unit_id"],
                       "outcome": 1.0, "reward": df["value"]})
    pre = pd.DataFrame({"user_id": df["unit_id"], "pre_activity": df["x"]})
    return preds, fb, pre, [0.0, 1000.0, 2000.0]


@pytest.mark.parametrize("design", ["clusters", "phases"])
def test_analyze_frames_keeps_cuped_with_clusters_and_phases(
        cfg_with: Callable[..., Config], design: str) -> None:
    df = _units(2, cluster_randomised=design == "clusters")
    preds, fb, pre, starts = _log(df)
    kw = {"metric_type": "continuous", "method": "fixed", "mde": 0.5,
          **({"cluster_column": "region"} if design == "clusters" else {})}
    on = analyze_frames(cfg_with(**kw), preds, fb, expected_weights=HALF, covariates=pre,
                        phase_starts=starts).comparisons[0]
    off = analyze_frames(cfg_with(cuped=False, **kw), preds, fb, expected_weights=HALF,
                         phase_starts=starts).comparisons[0]
    assert on.effect.method == "welch+cuped"
    assert on.cuped is not None and on.cuped.variance_reduction > 0.3
    assert np.diff(on.effect.ci)[0] < 0.85 * np.diff(off.effect.ci)[0]
