"""Drift between the training data and each variant's live traffic, between the arms, and of the
predictions.

Per feature: the population stability index (PSI, on the reference's decile bins for numeric
features, on categories otherwise) as the size of the shift, plus a test: two-sample
Kolmogorov-Smirnov (numeric) or a chi-square test of homogeneity (categorical), both scipy, and
a plain effect size (KS distance; Cramer's V). Built to hold up on real tables with small arms:

* a comparison needs ``drift.min_rows`` rows on each side (PSI of 100 rows over 41 levels is
  ~0.4 from noise alone);
* categorical levels expected fewer than 5 times in the live rows are merged into one;
* a feature breaches only when it is both large (PSI >= ``psi_threshold``) and significant after
  Holm over every test of the look, at ``p_threshold`` x 6/(pi^2 k^2) at look k (so features and
  looks together cannot pile up false alarms);
* each challenger's live features are also compared with the champion's (randomisation makes
  them identical; a difference means assignment or logging is broken).

Prediction drift compares the first and second half (by time) of a variant's live predictions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

_EPS = 1e-4  # floor on bin shares, so an empty bin does not make PSI infinite
OTHER = "__other__"


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    variant: str
    kind: str  # numeric | categorical | prediction
    psi: float
    p_value: float
    breach: bool
    n_reference: int
    n_live: int
    against: str = "training"  # training | champion | early (prediction drift)
    effect: float = float("nan")  # KS distance (numeric) or Cramer's V (categorical)
    p_adjusted: float = float("nan")  # Holm over the look's tests


def psi_from_shares(expected: npt.ArrayLike, actual: npt.ArrayLike) -> float:
    """PSI = sum (a - e) ln(a / e) over bins of the share vectors."""
    e = np.clip(np.asarray(expected, dtype=float), _EPS, None)
    a = np.clip(np.asarray(actual, dtype=float), _EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


def numeric_drift(
    reference: npt.ArrayLike, live: npt.ArrayLike, bins: int = 10
) -> tuple[float, float]:
    """(PSI on the reference's quantile bins, KS p-value)."""
    psi, p, _ = numeric_drift_full(reference, live, bins)
    return psi, p


def numeric_drift_full(
    reference: npt.ArrayLike, live: npt.ArrayLike, bins: int = 10
) -> tuple[float, float, float]:
    """(PSI, KS p-value, KS distance)."""
    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(live, dtype=float)
    ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    e = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=edges.size + 1) / ref.size
    a = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=edges.size + 1) / cur.size
    ks = stats.ks_2samp(ref, cur)
    return psi_from_shares(e, a), float(ks.pvalue), float(ks.statistic)


def merge_rare(reference: pd.Series, live: pd.Series, min_expected: float = 5.0) -> tuple:
    """Both series with levels expected < ``min_expected`` times in ``live`` merged into OTHER."""
    ref, cur = reference.dropna().astype(str), live.dropna().astype(str)
    shares = pd.concat([ref, cur]).value_counts(normalize=True)
    rare = set(shares[shares * min(len(ref), len(cur)) < min_expected].index)
    if len(rare) > 1:
        ref, cur = ref.where(~ref.isin(rare), OTHER), cur.where(~cur.isin(rare), OTHER)
    return ref, cur


def categorical_drift(reference: pd.Series, live: pd.Series) -> tuple[float, float]:
    """(PSI over categories, chi-square homogeneity p-value)."""
    psi, p, _ = categorical_drift_full(reference, live)
    return psi, p


def categorical_drift_full(reference: pd.Series, live: pd.Series) -> tuple[float, float, float]:
    """(PSI, chi-square p-value, Cramer's V) after merging rare levels."""
    ref, cur = merge_rare(reference, live)
    cats = sorted(set(ref) | set(cur))
    r = ref.value_counts().reindex(cats, fill_value=0).to_numpy(dtype=float)
    c = cur.value_counts().reindex(cats, fill_value=0).to_numpy(dtype=float)
    psi = psi_from_shares(r / r.sum(), c / c.sum())
    if len(cats) < 2:
        return psi, 1.0, 0.0
    chi2, p, _, _ = stats.chi2_contingency(np.vstack([r, c]))
    return psi, float(p), float(math.sqrt(chi2 / (r.sum() + c.sum())))


def feature_drift(
    reference: pd.DataFrame, live: pd.DataFrame, variant: str, numeric: Sequence[str],
    categorical: Sequence[str], psi_threshold: float, p_threshold: float, min_rows: int = 200,
    against: str = "training",
) -> list[FeatureDrift]:
    """Drift of every configured feature present in both frames (skips those with few rows).

    ``breach`` here is the per-test rule (large and p < ``p_threshold``); ``control_alarms``
    then applies Holm and the look's alpha over all tests of a look.
    """
    out = []
    for kind, cols in (("numeric", numeric), ("categorical", categorical)):
        for col in cols:
            if col not in reference or col not in live:
                continue
            ref, cur = reference[col].dropna(), live[col].dropna()
            if min(len(ref), len(cur)) < min_rows:
                continue
            if kind == "numeric":
                psi, p, eff = numeric_drift_full(ref.to_numpy(float), cur.to_numpy(float))
            else:
                psi, p, eff = categorical_drift_full(ref, cur)
            breach = psi >= psi_threshold and p < p_threshold
            out.append(FeatureDrift(col, variant, kind, psi, p, breach, len(ref), len(cur),
                                    against, eff, p))
    return out


def look_threshold(p_threshold: float, look: int) -> float:
    """p_threshold x 6/(pi^2 k^2): summed over all looks it is p_threshold."""
    return p_threshold * 6.0 / (math.pi**2 * max(look, 1) ** 2)


def control_alarms(
    results: list[FeatureDrift], psi_threshold: float, p_threshold: float, look: int
) -> list[FeatureDrift]:
    """Holm over every test of the look at the look's threshold; breach = large and significant."""
    if not results:
        return results
    level = look_threshold(p_threshold, look)
    pvals = np.array([min(max(r.p_value, 0.0), 1.0) for r in results])
    _, adj, _, _ = multipletests(pvals, alpha=level, method="holm")
    return [replace(r, p_adjusted=float(a), breach=bool(r.psi >= psi_threshold and a < level))
            for r, a in zip(results, adj, strict=True)]


def prediction_drift(
    predictions: pd.DataFrame, variant: str, psi_threshold: float, p_threshold: float,
    min_rows: int = 200,
) -> FeatureDrift | None:
    """Early half vs late half (by ts) of a variant's predictions; None when too few."""
    rows = predictions.dropna(subset=["prediction"]).sort_values("ts")
    if len(rows) < min_rows:
        return None
    half = len(rows) // 2
    early = rows["prediction"].to_numpy(float)[:half]
    late = rows["prediction"].to_numpy(float)[half:]
    psi, p, eff = numeric_drift_full(early, late)
    breach = psi >= psi_threshold and p < p_threshold
    return FeatureDrift("prediction", variant, "prediction", psi, p, breach, half, len(late),
                        "early", eff, p)
