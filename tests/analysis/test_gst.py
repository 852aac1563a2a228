"""Group-sequential test as the canary runs it: any look schedule, observed information."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from scipy import stats

from pipeline_components.analysis.fixed import EffectResult
from pipeline_components.analysis.gst import (
    boundaries,
    gst_test,
    inflation_factor,
    rejection_probability,
    spent,
)
from pipeline_components.analysis.planning import fixed_information
from pipeline_components.analysis.summaries import SampleMean
from pipeline_components.config import Config


def _arms(n: int, seed: int = 0, lift: float = 0.0) -> tuple[SampleMean, SampleMean]:
    rng = np.random.default_rng(seed)
    return (SampleMean.from_values(rng.normal(0, 1, n)),
            SampleMean.from_values(rng.normal(lift, 1, n)))


def _info_for_fraction(c: SampleMean, t: SampleMean, frac: float, infl: float) -> float:
    """The fixed information that puts these arms at information fraction ``frac``."""
    var = c.variance / c.n + t.variance / t.n
    return 1.0 / var / frac / infl


@pytest.mark.parametrize("kind", ["obf", "pocock"])
def test_non_monotone_recorded_fractions_still_decide(kind: str) -> None:
    # Variance estimates move between looks, so recorded fractions can fall: never a crash.
    c, t = _arms(800)
    res = gst_test(c, t, alpha=0.05, power=0.8, fixed_info=fixed_information(0.1, 0.05, 0.8),
                   look=3, max_looks=3, kind=kind, previous_fractions=[0.50, 0.45])
    assert res.reason is None and math.isfinite(res.details["boundary"])
    assert res.details["final"]


def test_current_fraction_below_an_earlier_one_is_no_crash() -> None:
    c, t = _arms(400)
    infl = inflation_factor(5, 0.05, 0.8, "obf")
    res = gst_test(c, t, alpha=0.05, power=0.8, fixed_info=_info_for_fraction(c, t, 0.6, infl),
                   look=2, max_looks=5, previous_fractions=[0.9])
    assert res.details["observed_fraction"] == pytest.approx(0.6)
    assert res.reason is None and res.details["info_fraction"] > 0.9
    # Almost no new information: almost no new alpha spent (the spending function's increment).
    fr = [0.9, res.details["info_fraction"]]
    b = boundaries(fr, 0.05, "obf", final=False)
    assert res.details["boundary"] == pytest.approx(b[-1], abs=1e-9)
    total = rejection_probability(b, fr, 0.0, upper_only=False)
    assert total == pytest.approx(float(spent(fr[1], 0.05, "obf")), abs=1e-6)
    assert total - float(spent(0.9, 0.05, "obf")) < 0.003


def test_final_look_spends_the_remaining_alpha_at_the_observed_fraction() -> None:
    # The canary's last look comes at 60% of the planned information: its boundary spends what
    # is left at t = 0.6 (exactly alpha in total), instead of pretending t = 1.
    c, t = _arms(500)
    info = _info_for_fraction(c, t, 0.6, inflation_factor(2, 0.05, 0.8, "obf"))
    res = gst_test(c, t, alpha=0.05, power=0.8, fixed_info=info, look=2, max_looks=2,
                   kind="obf", previous_fractions=[0.3])
    fr = [0.3, res.details["info_fraction"]]
    assert res.details["final"] and fr[1] == pytest.approx(0.6)
    assert res.details["boundary"] == pytest.approx(
        boundaries(fr, 0.05, "obf", final=True)[-1], abs=1e-9)
    b = boundaries(fr, 0.05, "obf", final=True)
    assert rejection_probability(b, fr, 0.0, upper_only=False) == pytest.approx(0.05, abs=1e-6)


def test_overrunning_information_spends_all_alpha() -> None:
    b = boundaries([0.5, 1.3], 0.05, "pocock")
    assert rejection_probability(b, [0.5, 1.3], 0.0, upper_only=False) == pytest.approx(
        0.05, abs=1e-6)


def test_single_final_look_is_the_fixed_test() -> None:
    c, t = _arms(300, seed=2, lift=0.2)
    res = gst_test(c, t, alpha=0.05, power=0.8, fixed_info=1e6, look=1, max_looks=1)
    assert res.details["boundary"] == pytest.approx(stats.norm.isf(0.025), abs=1e-8)


@pytest.mark.parametrize("lift", [0.0, 0.12, 0.3])
def test_gst_p_value_is_the_repeated_p_value(lift: float) -> None:
    # p <= a exactly when this look's boundary at level a is crossed, and p is never below the
    # fixed-horizon p-value (which ignores the looks).
    c, t = _arms(600, seed=4, lift=lift)
    res = gst_test(c, t, alpha=0.05, power=0.8, fixed_info=1.0 / (2 / 600) / 0.5 / 1.2, look=2,
                   max_looks=4, kind="pocock", previous_fractions=[0.2])
    z, fr = res.details["z"], [0.2, res.details["info_fraction"]]
    assert res.p_value >= 2 * stats.norm.sf(abs(z)) - 1e-12
    assert res.significant == (res.p_value <= 0.05)
    for a in (0.5 * res.p_value, 1.01 * res.p_value):
        if a < 1:
            crossed = abs(z) >= boundaries(fr, a, "pocock", final=False)[-1]
            assert crossed == (res.p_value <= a)


def test_a_later_look_without_recorded_fractions_is_refused(
        cfg_with: Callable[..., Config]) -> None:
    # Equally spaced earlier looks used to be assumed: 6.1% type-I with OBF when looks bunch
    # late. Now gst_test and the decision path refuse to guess; the first look needs nothing.
    from pipeline_components.analysis import analyze_frames
    from pipeline_components.analysis.testing import SimSpec, simulate_log
    from pipeline_components.errors import AnalysisError

    rng = np.random.default_rng(12)
    c = SampleMean.from_values(rng.normal(0, 1, 300))
    t = SampleMean.from_values(rng.normal(0, 1, 300))
    def look(k: int, prev: list[float] | None = None) -> EffectResult:
        return gst_test(c, t, alpha=0.05, power=0.8, fixed_info=200.0, look=k, max_looks=5,
                        previous_fractions=prev)

    with pytest.raises(ValueError, match=r"look=3: previous_fractions"):
        look(3)
    assert look(1).reason is None
    assert look(3, [0.1, 0.8]).details["info_fraction"] > 0.8
    log = simulate_log(SimSpec(n_units=600, seed=3))
    with pytest.raises(AnalysisError, match="previous_fractions"):
        analyze_frames(cfg_with(method="gst"), log.predictions, log.feedback,
                       expected_weights={"champion": 0.5, "challenger": 0.5}, look=2)
