"""Drift between the training data and each variant's live traffic, and of the predictions.

Per feature: the population stability index (PSI, on the reference's decile bins for numeric
features, on categories otherwise) plus a test: two-sample Kolmogorov-Smirnov (numeric) or a
chi-square test of homogeneity (categorical), both scipy. Prediction drift compares the first
and second half (by time) of a variant's live predictions. A feature breaches when its PSI
reaches ``drift.psi_threshold`` or its p-value falls below ``drift.p_threshold``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

_EPS = 1e-4  # floor on bin shares, so an empty bin does not make PSI infinite


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


def psi_from_shares(expected: npt.ArrayLike, actual: npt.ArrayLike) -> float:
    """PSI = sum (a - e) ln(a / e) over bins of the share vectors."""
    e = np.clip(np.asarray(expected, dtype=float), _EPS, None)
    a = np.clip(np.asarray(actual, dtype=float), _EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


def numeric_drift(
    reference: npt.ArrayLike, live: npt.ArrayLike, bins: int = 10
) -> tuple[float, float]:
    """(PSI on the reference's quantile bins, KS p-value)."""
    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(live, dtype=float)
    ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    e = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=edges.size + 1) / ref.size
    a = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=edges.size + 1) / cur.size
    return psi_from_shares(e, a), float(stats.ks_2samp(ref, cur).pvalue)


def categorical_drift(reference: pd.Series, live: pd.Series) -> tuple[float, float]:
    """(PSI over categories, chi-square homogeneity p-value)."""
    cats = sorted(set(reference.dropna().astype(str)) | set(live.dropna().astype(str)))
    r = reference.astype(str).value_counts().reindex(cats, fill_value=0).to_numpy(dtype=float)
    c = live.astype(str).value_counts().reindex(cats, fill_value=0).to_numpy(dtype=float)
    psi = psi_from_shares(r / r.sum(), c / c.sum())
    if len(cats) < 2:
        return psi, 1.0
    return psi, float(stats.chi2_contingency(np.vstack([r, c]))[1])


def feature_drift(
    reference: pd.DataFrame, live: pd.DataFrame, variant: str, numeric: Sequence[str],
    categorical: Sequence[str], psi_threshold: float, p_threshold: float, min_rows: int = 50,
) -> list[FeatureDrift]:
    """Drift of every configured feature present in both frames (skips those with few rows)."""
    out = []
    for kind, cols in (("numeric", numeric), ("categorical", categorical)):
        for col in cols:
            if col not in reference or col not in live:
                continue
            ref, cur = reference[col].dropna(), live[col].dropna()
            if min(len(ref), len(cur)) < min_rows:
                continue
            if kind == "numeric":
                psi, p = numeric_drift(ref.to_numpy(float), cur.to_numpy(float))
            else:
                psi, p = categorical_drift(ref, cur)
            breach = psi >= psi_threshold or p < p_threshold
            out.append(FeatureDrift(col, variant, kind, psi, p, breach, len(ref), len(cur)))
    return out


def prediction_drift(
    predictions: pd.DataFrame, variant: str, psi_threshold: float, p_threshold: float,
    min_rows: int = 100,
) -> FeatureDrift | None:
    """Early half vs late half (by ts) of a variant's predictions; None when too few."""
    rows = predictions.dropna(subset=["prediction"]).sort_values("ts")
    if len(rows) < min_rows:
        return None
    half = len(rows) // 2
    early = rows["prediction"].to_numpy(float)[:half]
    late = rows["prediction"].to_numpy(float)[half:]
    psi, p = numeric_drift(early, late)
    breach = psi >= psi_threshold or p < p_threshold
    return FeatureDrift("prediction", variant, "prediction", psi, p, breach, half, len(late))
