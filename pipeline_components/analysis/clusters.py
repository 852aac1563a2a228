"""Cluster-randomised experiments and clustered units (region, store, household).

When whole clusters are randomised, or units of one cluster share shocks, units are not
independent and the unit-level variance is too small (a real cluster-randomised experiment gets a
confidence interval ~3x too narrow). Given ``analysis.cluster_column`` (a key of the logged
features), each unit takes the cluster of its first served request and:

* the variance of the difference of means is the cluster-robust sandwich of the OLS regression
  of the metric on a treatment dummy, with statsmodels' small-sample factor
  G/(G-1) (N-1)/(N-2) (``cov_type="cluster"``), built into per-arm ``SampleMean`` summaries so
  every test (fixed, mSPRT, gst) runs on them unchanged, the Welch t with G - 1 degrees of
  freedom (statsmodels' cluster-robust ``use_t``), not the units';
* SRM counts clusters, not units, when every cluster sits in one variant (cluster-randomised);
* ``planning.plan(design_effect=1 + (m - 1) ICC)`` sizes the design.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import numpy.typing as npt
import pandas as pd

from pipeline_components.aliases import CHAMPION as CONTROL
from pipeline_components.analysis.summaries import SampleMean


def unit_clusters(served: pd.DataFrame, features: pd.DataFrame, column: str) -> pd.Series:
    """unit_id -> cluster label from the first served request that names one (else the unit)."""
    if column not in features:
        return pd.Series(dtype=str)
    labels = pd.DataFrame({"unit_id": served.loc[features.index, "unit_id"].to_numpy(),
                           "cluster": features[column].to_numpy()}).dropna()
    return labels.drop_duplicates("unit_id").set_index("unit_id")["cluster"].astype(str)


def attach_clusters(unit_values: pd.DataFrame, clusters: pd.Series) -> pd.DataFrame:
    """unit_values plus a ``cluster`` column; a unit with no label is a cluster of its own."""
    label = unit_values["unit_id"].map(clusters)
    return unit_values.assign(cluster=label.fillna("unit:" + unit_values["unit_id"].astype(str)))


def robust_ols(
    y: npt.NDArray, treat: npt.NDArray, x: npt.NDArray | None, groups: npt.ArrayLike
) -> tuple[float, float, npt.NDArray, float]:
    """OLS of y on 1, the treatment dummy [and the covariate x], cluster-robust.

    Returns (beta, theta, psi, c): the treatment coefficient, the covariate's (0 without x), each
    unit's influence on beta, psi_i = T~_i e_i / sum T~^2 (T~: the dummy residualised on 1 [and
    x], e: the OLS residual; Frisch-Waugh-Lovell), and statsmodels' small-sample factor
    c = G/(G-1) (N-1)/(N-K). The variance of beta is c sum_g (sum_{i in g} psi_i)^2, which is
    ``OLS(...).fit(cov_type="cluster")``'s; with every unit its own group it is HC1's.
    """
    n = y.size
    z = np.ones((n, 1)) if x is None else np.column_stack([np.ones(n), x])
    t = treat.astype(float)
    t_res = t - z @ np.linalg.lstsq(z, t, rcond=None)[0]
    design = np.column_stack([np.ones(n), t] + ([] if x is None else [x]))
    coef = np.linalg.lstsq(design, y, rcond=None)[0]
    resid = y - design @ coef
    psi = t_res * resid / float(np.dot(t_res, t_res))
    g = pd.unique(np.asarray(groups)).size
    c = g / max(g - 1, 1) * (n - 1) / (n - design.shape[1])
    return float(coef[1]), float(coef[2]) if x is not None else 0.0, psi, c


def cluster_robust_arms(values: pd.DataFrame, name: str, covariate: bool = False
                        ) -> tuple[SampleMean, SampleMean]:
    """Champion and ``name`` summaries whose variance/n is the cluster-robust Var(mean).

    Per arm, V_a = c sum_g (sum_{i in g, arm a} psi_i)^2 (``robust_ols``); when clusters hold
    units of both arms the two are scaled together so V_0 + V_1 is the exact sandwich (cross
    terms included), which is statsmodels' cluster-robust variance of the treatment coefficient.
    With ``covariate`` (CUPED, column ``x``) the regression includes x and each arm's mean is
    adjusted, mean_a - theta (mean x_a - mean x), so the difference is the OLS coefficient.
    """
    return cluster_robust_adjusted(values, name, covariate)[1:]


def cluster_robust_adjusted(values: pd.DataFrame, name: str, covariate: bool = True
                            ) -> tuple[float, SampleMean, SampleMean]:
    """theta and the two arms of ``cluster_robust_arms`` (see there)."""
    rows = values[values["variant"].isin([CONTROL, name])]
    y = rows["value"].to_numpy(dtype=float)
    treat = (rows["variant"] == name).to_numpy()
    n1, n0 = int(treat.sum()), int((~treat).sum())
    x = rows["x"].to_numpy(dtype=float) if covariate else None
    groups = rows["cluster"].to_numpy()
    g = int(pd.unique(groups).size)
    if min(n0, n1) < 2 or (x is not None and not np.ptp(x) > 0):
        return (0.0, replace(SampleMean.from_values(y[~treat]), clusters=g),
                replace(SampleMean.from_values(y[treat]), clusters=g))
    _, theta, psi, c = robust_ols(y, treat, x, groups)
    adj = y if x is None else y - theta * (x - x.mean())
    total = float(np.square(pd.Series(psi).groupby(groups).sum().to_numpy()).sum())
    part = [float(np.square(pd.Series(psi[m]).groupby(groups[m]).sum().to_numpy()).sum())
            for m in (~treat, treat)]
    scale = total / sum(part) if sum(part) > 0 else 1.0
    out = []
    for m, k, v in ((~treat, n0, part[0]), (treat, n1, part[1])):
        arm = adj[m]
        out.append(SampleMean(k, float(arm.sum()), float(np.square(arm).sum()),
                              centered_ss=c * scale * v * k * (k - 1), clusters=g))
    return theta, out[0], out[1]


def cluster_counts(values: pd.DataFrame) -> dict[str, int] | None:
    """Clusters per variant if each cluster sits in one variant (cluster-randomised), else None."""
    per = values.groupby("cluster")["variant"].nunique()
    if per.empty or (per > 1).any():
        return None
    firsts = values.drop_duplicates("cluster")["variant"].value_counts()
    return {str(k): int(v) for k, v in firsts.items()}
