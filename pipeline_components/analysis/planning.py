"""Sample-size planning on the information scale the tests use.

One information definition everywhere: I = 1/Var(difference of means), with the unpooled
per-arm variances (p(1-p) for a rate, sd^2 for a mean). ``plan`` sizes each arm so that I reaches
the fixed design's information (times the group-sequential inflation), which is exactly what
``gst_test`` and the fixed test monitor; Cohen's h (statsmodels' NormalIndPower) differs by a few
percent and is only reported as the effect size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from scipy import stats
from statsmodels.stats.proportion import proportion_effectsize

from pipeline_components.analysis.futility import futility_design
from pipeline_components.analysis.gst import Spending, inflation_factor


@dataclass(frozen=True)
class Plan:
    """Units per arm for a fixed-horizon test, and for a group-sequential design with ``looks``."""

    metric_type: str
    baseline: float
    mde: float
    alpha: float
    power: float
    ratio: float
    effect_size: float
    n_control: int
    n_treatment: int
    looks: int
    gst_inflation: float
    gst_n_control: int
    gst_n_treatment: int


def fixed_information(mde: float, alpha: float, power: float) -> float:
    """1/Var(difference) at which a two-sided level-alpha z-test has ``power`` at lift ``mde``."""
    return ((stats.norm.isf(alpha / 2) + stats.norm.isf(1 - power)) / mde) ** 2


def plan(
    baseline: float,
    mde: float,
    alpha: float = 0.05,
    power: float = 0.8,
    *,
    ratio: float = 1.0,
    metric_type: Literal["binary", "continuous"] = "binary",
    sd: float | None = None,
    looks: int = 10,
    spending: Spending = "obf",
    futility: Spending | None = None,
    design_effect: float = 1.0,
) -> Plan:
    """Sample size per arm for lift ``mde`` (absolute) on a rate ``baseline`` or a mean with ``sd``.

    ``ratio`` is n_treatment / n_control (a 95/5 canary is ratio 5/95). n_control solves
    var0/n0 + var1/(ratio n0) = 1/I_fixed, with var = p(1-p) at the baseline and at baseline+mde
    for rates and sd^2 for means: the information the tests monitor (``fixed_information``).
    ``design_effect`` (1 + (m - 1) ICC for clusters of m units) multiplies the units needed.
    """
    if design_effect < 1:
        raise ValueError(f"design_effect must be >= 1, got {design_effect}")
    if metric_type == "binary":
        if not 0 < baseline < 1 or not 0 < baseline + mde < 1:
            raise ValueError(f"baseline {baseline} and baseline+mde must be rates in (0, 1)")
        es = abs(float(proportion_effectsize(baseline + mde, baseline)))
        var0, var1 = baseline * (1 - baseline), (baseline + mde) * (1 - baseline - mde)
    else:
        if not sd or sd <= 0:
            raise ValueError("a continuous metric needs its standard deviation (sd > 0)")
        es = abs(mde) / sd
        var0 = var1 = sd**2
    if ratio <= 0:
        raise ValueError(f"ratio must be > 0, got {ratio}")
    n0 = fixed_information(mde, alpha, power) * (var0 + var1 / ratio) * design_effect
    if futility:
        infl = futility_design(looks, alpha, power, spending, futility)[1]
    else:
        infl = inflation_factor(looks, alpha, power, spending)
    return Plan(
        metric_type, baseline, mde, alpha, power, ratio, es, math.ceil(n0), math.ceil(n0 * ratio),
        looks, infl, math.ceil(n0 * infl), math.ceil(n0 * ratio * infl),
    )
