"""Model quality from delayed labels: log loss, AUC and calibration per variant.

Labels arrive late; a served prediction without its feedback yet is *pending*, which is reported
and never counted as a failure. sklearn computes the metrics on the labelled rows only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss, roc_auc_score

from pipeline_components.analysis import codes

CALIBRATION_BINS = 10


@dataclass(frozen=True)
class QualityResult:
    variant: str
    n_labelled: int
    n_pending: int
    log_loss: float = float("nan")
    auc: float = float("nan")
    mean_prediction: float = float("nan")
    observed_rate: float = float("nan")
    ece: float = float("nan")  # expected calibration error over equal-width bins
    reason: str | None = None


def expected_calibration_error(p: np.ndarray, y: np.ndarray, bins: int = CALIBRATION_BINS) -> float:
    """Share-weighted mean |observed rate - mean prediction| over equal-width probability bins."""
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in np.unique(idx):
        m = idx == b
        total += m.mean() * abs(y[m].mean() - p[m].mean())
    return float(total)


def model_quality(variant: str, labelled: pd.DataFrame, n_pending: int) -> QualityResult:
    """Quality of one variant's predictions; ``labelled`` has columns prediction and outcome."""
    rows = labelled.dropna(subset=["prediction", "outcome"])
    p = np.clip(rows["prediction"].to_numpy(dtype=float), 1e-15, 1 - 1e-15)
    y = rows["outcome"].to_numpy(dtype=float)
    if len(rows) == 0:
        return QualityResult(variant, 0, n_pending, reason=codes.NOT_ENOUGH_DATA)
    if not np.isin(y, (0.0, 1.0)).all():
        return QualityResult(variant, len(rows), n_pending, reason="NON_BINARY_OUTCOME")
    auc = float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan")
    return QualityResult(
        variant=variant, n_labelled=len(rows), n_pending=n_pending,
        log_loss=float(log_loss(y, p, labels=[0, 1])), auc=auc,
        mean_prediction=float(p.mean()), observed_rate=float(y.mean()),
        ece=expected_calibration_error(p, y),
    )
