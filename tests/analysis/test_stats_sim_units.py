"""stats_sim's samples-to-decision denominators: the fixed-horizon units under the schedule's own
allocation, and the earliest look at which any level-alpha test could promote half the runs."""

from __future__ import annotations

import pytest
from scipy import stats

from benchmarks.stats_sim import (
    ALPHA,
    POWER,
    earliest_median_look,
    fixed_horizon_units,
    schedules,
)

N_FH = 1570  # per arm, equal arms


def test_equal_arms_need_twice_n_fh() -> None:
    units = fixed_horizon_units(schedules(N_FH)["equal10"], N_FH)
    assert units == pytest.approx(2 * N_FH, rel=1e-3)


def test_the_canary_ramp_needs_more_units_for_the_same_information() -> None:
    sched = schedules(N_FH)["canary5"]
    units = fixed_horizon_units(sched, N_FH)
    assert units > 1.5 * 2 * N_FH  # 5/25/50% challenger shares: the small arm leads
    # the point lies inside the step that crosses n_fh/2 of harmonic information, on its split
    (p0, p1), (n0, n1) = next((a, b) for a, b in zip(sched, sched[1:], strict=False)
                              if a[0] * a[1] / sum(a) < N_FH / 2 <= b[0] * b[1] / sum(b))
    x = (units - p0 - p1) / (n0 + n1 - p0 - p1)
    m0, m1 = p0 + x * (n0 - p0), p1 + x * (n1 - p1)
    assert 0 < x <= 1
    assert m0 * m1 / (m0 + m1) == pytest.approx(N_FH / 2, rel=1e-9)


def test_earliest_median_look_is_where_the_one_sided_test_has_half_power() -> None:
    drift = stats.norm.isf(ALPHA / 2) + stats.norm.isf(1 - POWER)
    need = (stats.norm.isf(ALPHA) / drift) ** 2  # fraction of I_fixed: ~0.345 at the MDE
    n = [max(2, round(f * N_FH)) for f in (0.2, 0.34, 0.35, 0.9)]
    sched = [(x, x) for x in n]
    assert 0.34 < need < 0.35
    assert earliest_median_look(sched, N_FH, 1.0) == 3
    assert earliest_median_look(sched, N_FH, 2.0) == 1  # 4 x the drift^2: 0.2 >= need / 4
