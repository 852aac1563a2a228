"""mSPRT, group-sequential boundaries and planning: known answers and a seeded validity check."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize

from pipeline_components.analysis import codes
from pipeline_components.analysis.gst import (
    boundaries,
    gst_test,
    inflation_factor,
    rejection_probability,
)
from pipeline_components.analysis.planning import fixed_information, plan
from pipeline_components.analysis.sequential import (
    halfwidth,
    log_mixture_lr,
    msprt_reject,
    msprt_test,
    tau2_for_horizon,
)
from pipeline_components.analysis.summaries import SampleMean, diff_and_variance


def test_confidence_sequence_inverts_the_test() -> None:
    # At the edge of the confidence sequence the mixture LR equals exactly 1/alpha.
    var, tau2, alpha = 0.0004, 0.0009, 0.05
    hw = float(halfwidth(var, tau2, alpha))
    assert float(log_mixture_lr(hw, var, tau2)) == pytest.approx(math.log(1 / alpha), abs=1e-9)
    assert not msprt_reject(hw * 0.999, var, tau2, alpha) and msprt_reject(hw * 1.001, var, tau2,
                                                                           alpha)


def test_tau_for_an_80pct_design_is_about_the_mde() -> None:
    mde = 0.02
    tau2 = tau2_for_horizon(1 / fixed_information(mde, 0.05, 0.8), 0.05)
    assert math.sqrt(tau2) == pytest.approx(mde, rel=0.05)


def test_msprt_result_and_always_valid_p() -> None:
    rng = np.random.default_rng(3)
    c = SampleMean.from_values(rng.normal(0.0, 1.0, 4000))
    t = SampleMean.from_values(rng.normal(0.15, 1.0, 4000))
    res = msprt_test(c, t, alpha=0.05, tau2=0.1**2)
    assert res.significant and res.direction == 1 and res.ci[0] > 0
    assert res.p_value == pytest.approx(math.exp(-res.details["log_lr"]))
    later = msprt_test(c, c, alpha=0.05, tau2=0.01, previous_p=0.2)
    assert later.p_value <= 0.2  # always-valid p-values never go back up
    assert msprt_test(SampleMean(1, 1.0, 1.0), c, 0.05, 0.01).reason == codes.NOT_ENOUGH_DATA


def test_sequential_tests_stay_valid_under_peeking() -> None:
    # Seeded A/A: 2,000 experiments, 20 looks each. Naive peeking must blow through alpha (the
    # harness works); mSPRT and the group-sequential test must not (loose bound: 0.05 + 3 SE).
    rng = np.random.default_rng(20261123)
    reps, looks, per_look = 2000, 20, 50
    r0 = rng.normal(0, 1, (reps, looks, per_look))
    r1 = rng.normal(0, 1, (reps, looks, per_look))
    x0, x1 = r0.sum(2), r1.sum(2)
    q0, q1 = (r0**2).sum(2), (r1**2).sum(2)
    n = np.arange(1, looks + 1) * per_look
    d, v = diff_and_variance(n, x0.cumsum(1), q0.cumsum(1), n, x1.cumsum(1), q1.cumsum(1))
    naive = (np.abs(d) >= 1.96 * np.sqrt(v)).any(1).mean()
    tau2 = tau2_for_horizon(2.0 / (looks * per_look), 0.05)
    msprt = msprt_reject(d, v, tau2, 0.05).any(1).mean()
    c = boundaries(np.arange(1, looks + 1) / looks, 0.05, "obf")
    gst = (np.abs(d) >= c * np.sqrt(v)).any(1).mean()
    bound = 0.05 + 3 * math.sqrt(0.05 * 0.95 / reps)
    assert naive > 0.15
    assert msprt <= bound and gst <= bound
    assert gst >= 0.03  # spends its alpha: not trivially conservative


def test_boundaries_match_published_lan_demets_tables() -> None:
    # gsDesign / ldbounds, K=5 equally spaced, two-sided alpha=0.05.
    fr = np.arange(1, 6) / 5
    assert boundaries(fr, 0.05, "obf") == pytest.approx([4.8769, 3.3569, 2.6803, 2.2898, 2.0310],
                                                        abs=2e-4)
    assert boundaries(fr, 0.05, "pocock") == pytest.approx(
        [2.4380, 2.4268, 2.4101, 2.3966, 2.3859], abs=2e-4)
    assert boundaries([1.0], 0.05)[0] == pytest.approx(stats.norm.isf(0.025), abs=1e-8)


@pytest.mark.parametrize("kind", ["obf", "pocock"])
def test_boundaries_spend_exactly_alpha(kind: str) -> None:
    fr = np.array([0.1, 0.25, 0.6, 0.8, 1.0])
    b = boundaries(fr, 0.05, kind)  # type: ignore[arg-type]
    assert rejection_probability(b, fr, 0.0, upper_only=False) == pytest.approx(0.05, abs=1e-6)


def test_inflation_factor_restores_power() -> None:
    assert inflation_factor(1, 0.05, 0.8) == pytest.approx(1.0, abs=1e-6)
    obf, poc = inflation_factor(10, 0.05, 0.8, "obf"), inflation_factor(10, 0.05, 0.8, "pocock")
    assert 1.0 < obf < 1.06 < 1.2 < poc < 1.3
    fr = np.arange(1, 11) / 10
    drift = math.sqrt(obf) * (stats.norm.isf(0.025) + stats.norm.isf(0.2))
    assert rejection_probability(boundaries(fr, 0.05), fr, drift) == pytest.approx(0.8, abs=1e-6)


def test_gst_test_final_look_and_repeated_interval() -> None:
    rng = np.random.default_rng(5)
    c = SampleMean.from_values(rng.normal(0, 1, 400))
    t = SampleMean.from_values(rng.normal(0, 1, 400))
    info_needed = fixed_information(0.5, 0.05, 0.8)  # tiny design: 400/arm is past the horizon
    res = gst_test(c, t, alpha=0.05, power=0.8, fixed_info=info_needed, look=2, max_looks=10,
                   previous_fractions=[0.5])
    # Over-run (6x the planned information): final, spends all alpha at the observed fraction.
    assert res.details["final"] and res.details["info_fraction"] > 1.0
    assert res.details["boundary"] == pytest.approx(
        boundaries([0.5, res.details["info_fraction"]], 0.05,
                   final=True)[-1], abs=1e-9)
    early = gst_test(c, t, alpha=0.05, power=0.8, fixed_info=info_needed * 100, look=1,
                     max_looks=10)
    assert not early.details["final"] and early.details["boundary"] > 3.0
    assert early.ci[1] - early.ci[0] > res.ci[1] - res.ci[0]


def test_plan_uses_the_information_the_tests_monitor() -> None:
    # One information definition: at the planned n the unpooled 1/Var(difference) is exactly the
    # fixed design's information (times the gst inflation for the gst max), and the size is
    # within 0.1% of statsmodels' Cohen's-h power calculation here.
    p = plan(0.1, 0.01, 0.05, 0.8)
    es = proportion_effectsize(0.11, 0.1)
    n = NormalIndPower().solve_power(es, nobs1=None, alpha=0.05, power=0.8, ratio=1.0)
    assert p.n_control == pytest.approx(n, rel=1e-3) and p.n_control == p.n_treatment
    info = 1.0 / (0.1 * 0.9 / p.n_control + 0.11 * 0.89 / p.n_treatment)
    assert info == pytest.approx(fixed_information(0.01, 0.05, 0.8), rel=1e-3)
    g_info = 1.0 / (0.1 * 0.9 / p.gst_n_control + 0.11 * 0.89 / p.gst_n_treatment)
    assert g_info == pytest.approx(p.gst_inflation * fixed_information(0.01, 0.05, 0.8), rel=1e-3)
    lopsided = plan(0.1, 0.01, ratio=0.25)
    assert lopsided.n_treatment == pytest.approx(lopsided.n_control * 0.25, abs=1)
    cont = plan(10.0, 1.0, metric_type="continuous", sd=5.0)
    assert cont.n_control == math.ceil(2 * 25 * fixed_information(1.0, 0.05, 0.8))
    with pytest.raises(ValueError, match="sd"):
        plan(10.0, 1.0, metric_type="continuous")
    with pytest.raises(ValueError, match="rates"):
        plan(0.995, 0.01)


@pytest.mark.parametrize(("efficacy", "fut"), [("obf", "obf"), ("obf", "pocock")])
def test_futility_design_spends_beta_and_keeps_power(efficacy: str, fut: str) -> None:
    from pipeline_components.analysis.futility import (
        decision_probabilities,
        futility_bounds,
        futility_design,
    )

    theta, infl = futility_design(10, 0.05, 0.8, efficacy, fut)  # type: ignore[arg-type]
    fr = np.arange(1, 11) / 10
    up = boundaries(fr, 0.05, efficacy)  # type: ignore[arg-type]
    low = futility_bounds(fr, up, 0.2, fut, theta)  # type: ignore[arg-type]
    assert low[-1] == pytest.approx(up[-1], abs=1e-6) and (low[:-1] < up[:-1]).all()
    p_up, p_down = decision_probabilities(up, low, fr, theta)
    assert p_up == pytest.approx(0.8, abs=1e-4) and p_down == pytest.approx(0.2, abs=1e-4)
    # Under H0 the binding futility bound only lowers the type-I error (it is non-binding).
    h0_up, _ = decision_probabilities(up, low, fr, 0.0)
    assert h0_up < 0.025
    assert infl > inflation_factor(10, 0.05, 0.8, efficacy)  # type: ignore[arg-type]


def test_gst_test_marks_futility() -> None:
    rng = np.random.default_rng(8)
    c = SampleMean.from_values(rng.normal(0, 1, 500))
    t = SampleMean.from_values(rng.normal(-0.05, 1, 500))
    info = fixed_information(0.15, 0.05, 0.8)
    res = gst_test(c, t, alpha=0.05, power=0.8, fixed_info=info, look=1, max_looks=10,
                   futility="pocock")
    assert res.details["futile"] and not res.significant
    assert res.details["futility_bound"] > res.details["z"]
    plain = gst_test(c, t, alpha=0.05, power=0.8, fixed_info=info, look=1, max_looks=10)
    assert "futile" not in plain.details
