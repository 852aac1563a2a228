"""Cluster-randomised experiments and clustered units (region, store, household).

When whole clusters are randomised, or units of one cluster share shocks, units are not
independent and the unit-level variance is too small (a real cluster-randomised experiment gets a
confidence interval ~3x too narrow). Given ``analysis.cluster_column`` (a key of the logged
features), each unit takes the cluster of its first served request and:

* the variance of the difference of means is the cluster-robust sandwich of the OLS regression
  of the metric on a treatment dummy, with statsmodels' small-sample factor
  G/(G-1) (N-1)/(N-2) (``cov_type="cluster"``), built into per-arm ``SampleMean`` summaries so
  every test (fixed, mSPRT, gst) runs on them unchanged;
* SRM counts clusters, not units, when every cluster sits in one variant (cluster-randomised);
* ``planning.plan(design_effect=1 + (m - 1) ICC)`` sizes the design.
"""

from __future__ import annotations

import numpy as np
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


def cluster_robust_arms(values: pd.DataFrame, name: str) -> tuple[SampleMean, SampleMean]:
    """Champion and ``name`` summaries whose variance/n is the cluster-robust Var(mean).

    Per arm, V_a = c sum_g (sum_{i in g, arm a} (y_i - mean_a))^2 / n_a^2; when clusters hold
    units of both arms the two are scaled together so V_0 + V_1 is the exact sandwich (cross
    terms included), which is statsmodels' cluster-robust variance of the treatment coefficient.
    """
    rows = values[values["variant"].isin([CONTROL, name])]
    y = rows["value"].to_numpy(dtype=float)
    treat = (rows["variant"] == name).to_numpy()
    n1, n0 = int(treat.sum()), int((~treat).sum())
    if min(n0, n1) < 2:
        return SampleMean.from_values(y[~treat]), SampleMean.from_values(y[treat])
    m1, m0 = y[treat].mean(), y[~treat].mean()
    resid = np.where(treat, y - m1, y - m0)
    psi = np.where(treat, resid / n1, -resid / n0)
    groups = rows["cluster"].to_numpy()
    total = float(np.square(pd.Series(psi).groupby(groups).sum().to_numpy()).sum())
    part = [float(np.square(pd.Series(resid[m]).groupby(groups[m]).sum().to_numpy()).sum()) / k**2
            for m, k in ((~treat, n0), (treat, n1))]
    g, n = pd.unique(groups).size, n0 + n1
    c = g / max(g - 1, 1) * (n - 1) / (n - 2)
    scale = total / sum(part) if sum(part) > 0 else 1.0
    out = []
    for m, k, v in ((~treat, n0, part[0]), (treat, n1, part[1])):
        arm = y[m]
        out.append(SampleMean(k, float(arm.sum()), float(np.square(arm).sum()),
                              centered_ss=c * scale * v * k * (k - 1)))
    return out[0], out[1]


def cluster_counts(values: pd.DataFrame) -> dict[str, int] | None:
    """Clusters per variant if each cluster sits in one variant (cluster-randomised), else None."""
    per = values.groupby("cluster")["variant"].nunique()
    if per.empty or (per > 1).any():
        return None
    firsts = values.drop_duplicates("cluster")["variant"].value_counts()
    return {str(k): int(v) for k, v in firsts.items()}
