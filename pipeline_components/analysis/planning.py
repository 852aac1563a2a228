"""Sample-size planning (statsmodels power) and the information a fixed design needs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from scipy import stats
from statsmodels.stats.power import NormalIndPower, TTestIndPower
from statsmodels.stats.proportion import proportion_effectsize

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
) -> Plan:
    """Sample size per arm for lift ``mde`` (absolute) on a rate ``baseline`` or a mean with ``sd``.

    ``ratio`` is n_treatment / n_control (a 95/5 canary is ratio 5/95). Binary metrics use Cohen's
    h with the normal power of statsmodels; continuous ones the t-test power with d = mde / sd.
    """
    if metric_type == "binary":
        if not 0 < baseline < 1 or not 0 < baseline + mde < 1:
            raise ValueError(f"baseline {baseline} and baseline+mde must be rates in (0, 1)")
        es = abs(float(proportion_effectsize(baseline + mde, baseline)))
        n0 = NormalIndPower().solve_power(es, nobs1=None, alpha=alpha, power=power, ratio=ratio)
    else:
        if not sd or sd <= 0:
            raise ValueError("a continuous metric needs its standard deviation (sd > 0)")
        es = abs(mde) / sd
        n0 = TTestIndPower().solve_power(es, nobs1=None, alpha=alpha, power=power, ratio=ratio)
    if futility:
        from pipeline_components.analysis.futility import futility_design

        infl = futility_design(looks, alpha, power, spending, futility)[1]
    else:
        infl = inflation_factor(looks, alpha, power, spending)
    n0 = float(n0)
    return Plan(
        metric_type, baseline, mde, alpha, power, ratio, es, math.ceil(n0), math.ceil(n0 * ratio),
        looks, infl, math.ceil(n0 * infl), math.ceil(n0 * ratio * infl),
    )
