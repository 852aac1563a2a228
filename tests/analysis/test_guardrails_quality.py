"""Guardrails (pass / breach / inconclusive), model quality, shadow pairs and drift."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from pipeline_components.analysis import codes
from pipeline_components.analysis.drift import (
    categorical_drift,
    feature_drift,
    numeric_drift,
    prediction_drift,
    psi_from_shares,
)
from pipeline_components.analysis.guardrails import error_rate_guardrail, latency_guardrail
from pipeline_components.analysis.quality import model_quality
from pipeline_components.analysis.shadow import shadow_compare


def _units(errors: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """One request per unit, ``errors`` of them failed."""
    return np.r_[np.ones(errors), np.zeros(n - errors)], np.ones(n)


@pytest.mark.parametrize(
    ("errors", "status"),
    [((50, 50), "pass"), ((50, 400), "breach"), ((50, 110), "inconclusive")],
)
def test_error_rate_guardrail(errors: tuple[int, int], status: str) -> None:
    res = error_rate_guardrail(_units(errors[0], 5000), _units(errors[1], 5000), 0.01, 0.05)
    assert res.status == status


def test_error_rate_guardrail_needs_units() -> None:
    res = error_rate_guardrail(_units(0, 5), _units(0, 5), 0.01, 0.05)
    assert res.status == "inconclusive" and res.reason == codes.NOT_ENOUGH_DATA


def test_latency_guardrail() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.lognormal(3, 0.5, 3000), rng.lognormal(3, 0.5, 3000)
    assert latency_guardrail(a, b, 20.0, 0.05).status == "pass"
    slow = latency_guardrail(a, b + 100.0, 20.0, 0.05)
    assert slow.status == "breach" and slow.bound[0] > 20.0
    few = latency_guardrail(a[:50], b[:50], 20.0, 0.05)  # p99 of 50 rows has no upper bound
    assert few.status == "inconclusive" and few.reason == codes.NOT_ENOUGH_DATA


def test_model_quality_matches_sklearn() -> None:
    rng = np.random.default_rng(1)
    y = (rng.random(500) < 0.3).astype(float)
    p = np.clip(0.3 + 0.4 * (y - 0.3) + rng.normal(0, 0.1, 500), 0.01, 0.99)
    q = model_quality("champion", pd.DataFrame({"prediction": p, "outcome": y}), n_pending=7)
    assert q.log_loss == pytest.approx(log_loss(y, p), abs=1e-12)
    assert q.auc == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert q.n_pending == 7 and q.n_labelled == 500
    empty = model_quality("x", pd.DataFrame({"prediction": [], "outcome": []}), 3)
    assert empty.reason == codes.NOT_ENOUGH_DATA and empty.n_pending == 3


def test_calibration_error_separates_calibrated_from_overconfident() -> None:
    rng = np.random.default_rng(5)
    p = rng.uniform(0, 1, 20000)
    y = (rng.random(20000) < p).astype(float)
    assert model_quality("v", pd.DataFrame({"prediction": p, "outcome": y}), 0).ece < 0.02
    bad = model_quality("v", pd.DataFrame({"prediction": np.full(1000, 0.9), "outcome": y[:1000]}),
                        0)
    assert bad.ece == pytest.approx(0.9 - y[:1000].mean(), abs=1e-12)


def _pairs(noise_challenger: float, n: int = 600) -> pd.DataFrame:
    rng = np.random.default_rng(2)
    y = (rng.random(n) < 0.4).astype(float)
    return pd.DataFrame({
        "unit_id": [f"u{i % (n // 2)}" for i in range(n)], "outcome": y,
        "p_champion": np.clip(0.4 + 0.3 * (y - 0.4) + rng.normal(0, 0.15, n), 0.01, 0.99),
        "p_challenger": np.clip(0.4 + 0.3 * (y - 0.4) + rng.normal(0, noise_challenger, n),
                                0.01, 0.99),
    })


def test_shadow_paired_comparison() -> None:
    better = shadow_compare(_pairs(0.02), 0.05)
    assert better.direction == 1 and better.log_loss_diff < 0 and better.n_units == 300
    worse = shadow_compare(_pairs(0.4), 0.05)
    assert worse.direction == -1 and worse.mcnemar_p < 0.05
    assert shadow_compare(_pairs(0.1, n=8), 0.05).reason == codes.NOT_ENOUGH_DATA


def test_drift_statistics() -> None:
    rng = np.random.default_rng(3)
    ref = rng.normal(0, 1, 5000)
    psi_same, p_same = numeric_drift(ref, rng.normal(0, 1, 2000))
    psi_shift, p_shift = numeric_drift(ref, rng.normal(1.0, 1, 2000))
    assert psi_same < 0.05 and p_same > 0.001 and psi_shift > 0.2 and p_shift < 1e-6
    assert psi_from_shares([0.5, 0.5], [0.5, 0.5]) == 0.0
    a = pd.Series(rng.choice(["a", "b", "c"], 3000, p=[0.6, 0.3, 0.1]))
    b = pd.Series(rng.choice(["a", "b", "c"], 3000, p=[0.2, 0.3, 0.5]))
    psi, p = categorical_drift(a, b)
    assert psi > 0.2 and p < 1e-6


def test_feature_and_prediction_drift_flags() -> None:
    rng = np.random.default_rng(4)
    ref = pd.DataFrame({"x0": rng.normal(0, 1, 3000), "segment": rng.choice(["a", "b"], 3000)})
    live = pd.DataFrame({"x0": rng.normal(0.8, 1, 1000), "segment": rng.choice(["a", "b"], 1000)})
    out = {d.feature: d for d in feature_drift(ref, live, "champion", ["x0"], ["segment"], 0.2,
                                               0.001)}
    assert out["x0"].breach and not out["segment"].breach
    preds = pd.DataFrame({"ts": np.arange(400.0),
                          "prediction": np.r_[rng.uniform(0, 0.5, 200), rng.uniform(0.5, 1, 200)]})
    shifted = prediction_drift(preds, "challenger", 0.2, 0.001)
    assert shifted is not None and shifted.breach
    assert prediction_drift(preds.head(50), "challenger", 0.2, 0.001) is None


def test_shadow_sequential_test_is_always_valid_and_decides() -> None:
    better = shadow_compare(_pairs(0.02, n=4000), 0.05, tau2=0.02**2)
    assert better.direction == 1 and better.ci[1] < 0
    fixed = shadow_compare(_pairs(0.02, n=4000), 0.05)
    # The confidence sequence is wider than the fixed-n interval: the price of peeking freely.
    assert better.ci[1] - better.ci[0] > fixed.ci[1] - fixed.ci[0]
    same = _pairs(0.15).assign(p_challenger=lambda f: f["p_champion"] + 1e-6)
    assert shadow_compare(same, 0.05, tau2=0.02**2).direction == 0
