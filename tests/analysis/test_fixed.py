"""Fixed-horizon tests agree with statsmodels on the raw data, and name what they cannot do."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW, ttest_ind

from pipeline_components.analysis import codes
from pipeline_components.analysis.fixed import proportion_test, welch_test
from pipeline_components.analysis.summaries import SampleMean


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("sizes", [(40, 55), (500, 120)])
def test_welch_matches_statsmodels(seed: int, sizes: tuple[int, int]) -> None:
    rng = np.random.default_rng(seed)
    x0 = rng.lognormal(1.0, 0.8, sizes[0])
    x1 = rng.lognormal(1.1, 1.0, sizes[1])
    res = welch_test(SampleMean.from_values(x0), SampleMean.from_values(x1), alpha=0.1)
    t, p, dof = ttest_ind(x1, x0, usevar="unequal")
    lo, hi = CompareMeans(DescrStatsW(x1), DescrStatsW(x0)).tconfint_diff(
        alpha=0.1, usevar="unequal")
    assert res.p_value == pytest.approx(p, abs=1e-9)
    assert res.details["t"] == pytest.approx(t, abs=1e-9)
    assert res.details["df"] == pytest.approx(dof, abs=1e-9)
    assert res.ci[0] == pytest.approx(lo, abs=1e-9) and res.ci[1] == pytest.approx(hi, abs=1e-9)
    assert res.lift == pytest.approx(x1.mean() - x0.mean(), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_proportion_test_matches_statsmodels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y0 = (rng.random(3000) < 0.10).astype(float)
    y1 = (rng.random(2500) < 0.12).astype(float)
    res = proportion_test(SampleMean.from_values(y0), SampleMean.from_values(y1))
    z, p = proportions_ztest([y1.sum(), y0.sum()], [y1.size, y0.size])
    lo, hi = confint_proportions_2indep(y1.sum(), y1.size, y0.sum(), y0.size, method="wald")
    assert res.p_value == pytest.approx(p, abs=1e-9)
    assert res.details["z"] == pytest.approx(z, abs=1e-9)
    assert res.ci == pytest.approx((lo, hi), abs=1e-9)
    # The delta-method relative interval is close to statsmodels' log-ratio interval at this n.
    rlo, rhi = confint_proportions_2indep(y1.sum(), y1.size, y0.sum(), y0.size, compare="ratio")
    assert res.rel_ci[0] == pytest.approx(rlo - 1, abs=0.03)
    assert res.rel_ci[1] == pytest.approx(rhi - 1, abs=0.03)


def test_significance_follows_alpha() -> None:
    c = SampleMean.from_values(np.r_[np.zeros(900), np.ones(100)])
    t = SampleMean.from_values(np.r_[np.zeros(860), np.ones(140)])
    assert proportion_test(c, t, alpha=0.05).direction == 1
    assert proportion_test(t, c, alpha=0.05).direction == -1
    assert proportion_test(c, t, alpha=1e-6).direction == 0


@pytest.mark.parametrize("test", [welch_test, proportion_test])
def test_unanalysable_inputs_have_named_reasons(test) -> None:  # type: ignore[no-untyped-def]
    one = SampleMean.from_values([1.0])
    many = SampleMean.from_values([0.0, 1.0, 1.0])
    assert test(one, many).reason == codes.NOT_ENOUGH_DATA
    flat = SampleMean.from_values([1.0, 1.0, 1.0])
    res = test(flat, flat)
    assert res.reason == codes.ZERO_VARIANCE and not res.significant


@pytest.mark.parametrize("test", [welch_test, proportion_test])
def test_constant_but_different_arms_decide(test) -> None:  # type: ignore[no-untyped-def]
    # 0/100 vs 100/100 is the clearest effect there is, not ZERO_VARIANCE with p = NaN forever.
    c, t = SampleMean.from_values(np.zeros(100)), SampleMean.from_values(np.ones(100))
    res = test(c, t)
    assert res.reason is None and res.significant and res.p_value < 1e-10
    assert res.ci[0] < 1.0 < res.ci[1] or res.ci[0] > 0  # an interval with width, above 0
    assert res.ci[1] > res.ci[0] and res.ci[0] > 0


def test_msprt_and_gst_decide_constant_but_different_arms() -> None:
    from pipeline_components.analysis.gst import gst_test
    from pipeline_components.analysis.sequential import msprt_test

    c, t = SampleMean.from_values(np.zeros(100)), SampleMean.from_values(np.ones(100))
    assert msprt_test(c, t, 0.05, 0.02**2).significant
    g = gst_test(c, t, alpha=0.05, power=0.8, fixed_info=1e3, look=1, max_looks=5)
    assert g.reason is None and g.significant


def test_variance_survives_a_large_mean() -> None:
    rng = np.random.default_rng(0)
    x = 1e8 + rng.normal(0, 1, 5000)
    s = SampleMean.from_values(x)
    assert s.variance == pytest.approx(np.var(x, ddof=1), rel=1e-9)
    y = 1e8 + rng.normal(0.1, 1, 5000)
    res = welch_test(s, SampleMean.from_values(y))
    t, p, _ = ttest_ind(y - 1e8, x - 1e8, usevar="unequal")
    assert res.p_value == pytest.approx(p, rel=1e-6)
