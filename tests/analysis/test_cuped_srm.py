"""CUPED agrees with the regression it stands for; SRM agrees with scipy and names mismatches."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from pipeline_components.analysis import codes
from pipeline_components.analysis.cuped import cuped
from pipeline_components.analysis.srm import srm_test
from pipeline_components.analysis.summaries import RegressionSummary


def _arm(rng: np.random.Generator, n: int, rho: float, lift: float) -> tuple[np.ndarray, ...]:
    x = rng.normal(5, 2, n)
    y = lift + rho * (x - 5) / 2 + np.sqrt(1 - rho**2) * rng.normal(0, 1, n)
    return y, x


def test_cuped_equals_the_adjusted_raw_data() -> None:
    rng = np.random.default_rng(0)
    (y0, x0), (y1, x1) = _arm(rng, 800, 0.6, 0.0), _arm(rng, 700, 0.6, 0.1)
    res = cuped(RegressionSummary.from_values(y0, x0), RegressionSummary.from_values(y1, x1))
    x, y = np.r_[x0, x1], np.r_[y0, y1]
    theta = np.cov(x, y)[0, 1] / np.var(x, ddof=1)
    adj0, adj1 = y0 - theta * (x0 - x.mean()), y1 - theta * (x1 - x.mean())
    assert res.theta == pytest.approx(theta, abs=1e-9)
    assert res.control is not None and res.treatment is not None
    assert res.control.mean == pytest.approx(adj0.mean(), abs=1e-9)
    assert res.treatment.variance == pytest.approx(adj1.var(ddof=1), abs=1e-9)
    before = y0.var(ddof=1) / y0.size + y1.var(ddof=1) / y1.size
    after = adj0.var(ddof=1) / adj0.size + adj1.var(ddof=1) / adj1.size
    assert res.variance_reduction == pytest.approx(1 - after / before, abs=1e-9)


@pytest.mark.parametrize("rho", [0.5, 0.7])
def test_cuped_reduction_is_about_rho_squared(rho: float) -> None:
    rng = np.random.default_rng(1)
    (y0, x0), (y1, x1) = _arm(rng, 20000, rho, 0.0), _arm(rng, 20000, rho, 0.0)
    res = cuped(RegressionSummary.from_values(y0, x0), RegressionSummary.from_values(y1, x1))
    assert res.variance_reduction == pytest.approx(rho**2, abs=0.03)


def test_cuped_names_a_useless_covariate() -> None:
    y = np.arange(10.0)
    res = cuped(RegressionSummary.from_values(y, np.ones(10)),
                RegressionSummary.from_values(y, np.ones(10)))
    assert res.reason == codes.NO_COVARIATE and res.control is None


def test_srm_agrees_with_scipy_and_flags_mismatch() -> None:
    res = srm_test({"champion": 5200, "challenger": 4800}, {"champion": 0.5, "challenger": 0.5},
                   0.001)
    stat, p = stats.chisquare([4800, 5200], [5000, 5000])
    assert res.p_value == pytest.approx(p, abs=1e-12) and res.statistic == pytest.approx(stat)
    assert res.mismatch  # p ~ 6e-5
    ok = srm_test({"champion": 9480, "challenger": 520}, {"champion": 0.95, "challenger": 0.05},
                  0.001)
    assert not ok.mismatch and ok.expected["challenger"] == pytest.approx(500)


def test_srm_edge_cases() -> None:
    w = {"champion": 0.9, "challenger": 0.1}
    assert srm_test({"champion": 20, "challenger": 1}, w, 0.001).reason == codes.NOT_ENOUGH_DATA
    stray = srm_test({"champion": 900, "challenger": 100, "ghost": 3}, w, 0.001)
    assert stray.mismatch and stray.unexpected == ["ghost"]
    solo = srm_test({"champion": 50}, {"champion": 1.0, "challenger": 0.0}, 0.001)
    assert not solo.mismatch and solo.p_value == 1.0


def test_regression_summary_keeps_its_digits_at_large_means() -> None:
    # y = 1e8 + N(0, 1), x = 1e8 + (y - 1e8)/2 + N(0, 1): raw sums of squares ~1e20 cancel to 0
    rng = np.random.default_rng(8)
    arms = []
    for lift in (0.0, 0.1):
        e = rng.normal(0.0, 1.0, 4000)
        y, x = 1e8 + e + lift, 1e8 + e / 2 + rng.normal(0.0, 1.0, 4000)
        arms.append((y, x))
    s = RegressionSummary.from_values(*arms[0])
    y0, x0 = arms[0]
    assert s.y.variance == pytest.approx(np.var(y0 - 1e8, ddof=1), rel=1e-6)
    assert s.covariance == pytest.approx(np.cov(x0 - 1e8, y0 - 1e8)[0, 1], rel=1e-6)
    big = cuped(*(RegressionSummary.from_values(y, x) for y, x in arms))
    small = cuped(*(RegressionSummary.from_values(y - 1e8, x - 1e8) for y, x in arms))
    assert big.theta == pytest.approx(small.theta, rel=1e-6)
    assert big.variance_reduction == pytest.approx(small.variance_reduction, rel=1e-5)
    assert big.variance_reduction > 0.1
    assert big.control is not None and small.control is not None
    assert big.control.variance == pytest.approx(small.control.variance, rel=1e-6)


def test_regression_summaries_merge_like_the_pooled_sample() -> None:
    rng = np.random.default_rng(9)
    y, x = 1e8 + rng.normal(0, 1, 3000), 5e7 + rng.normal(0, 1, 3000)
    merged = RegressionSummary.from_values(y[:1000], x[:1000]).merge(
        RegressionSummary.from_values(y[1000:], x[1000:]))
    whole = RegressionSummary.from_values(y, x)
    assert merged.n == whole.n
    np.testing.assert_allclose(merged.centred, whole.centred, rtol=1e-9)
