"""Group-sequential test with Lan-DeMets alpha spending on the information actually observed.

When the maximum information is planned, spending alpha over the looks buys more power than an
always-valid test. Information is 1/Var(difference of means) everywhere (``planning`` sizes
designs with the same definition), and each look is taken at the fraction of the planned maximum
that was *observed*, so any look schedule is handled by the spending function (``boundary``).
The last look (planned information reached, or the caller's last look) spends every bit of alpha
that is left, at its real fraction. Recorded fractions of earlier looks are made increasing
first: a variance estimate that moved between looks must never crash a decision.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from scipy import optimize, stats

from pipeline_components.analysis.boundary import (
    Spending,
    boundaries,
    rejection_probability,
    spent,
)
from pipeline_components.analysis.fixed import (
    EffectResult,
    _replace,
    arm_variances,
    base_result,
    information,
    relative_ci,
    robust_variance,
    unanalysable,
)
from pipeline_components.analysis.futility import futility_bounds, futility_design
from pipeline_components.analysis.summaries import SampleMean

__all__ = ["Spending", "boundaries", "gst_test", "inflation_factor", "monotone_fractions",
           "rejection_probability", "repeated_p_value", "spent"]

#: A look must add at least this share of information to count as a new look; less, and it is
#: taken at this much more than the previous one (so it spends almost no alpha).
MIN_STEP = 1.02


@lru_cache(maxsize=64)
def inflation_factor(looks: int, alpha: float, power: float, kind: Spending = "obf") -> float:
    """Max information / fixed-design information that keeps ``power`` with equally spaced looks."""
    fr = np.arange(1, looks + 1) / looks
    b = boundaries(fr, alpha, kind)
    fixed_drift = float(stats.norm.isf(alpha / 2) + stats.norm.isf(1 - power))
    drift = optimize.brentq(
        lambda d: rejection_probability(b, fr, d) - power, 0.5 * fixed_drift, 3 * fixed_drift,
        xtol=1e-8,
    )
    return (drift / fixed_drift) ** 2


def monotone_fractions(previous: Sequence[float], current: float) -> tuple[list[float], float]:
    """Earlier fractions made strictly increasing, and the current one placed after them.

    A recorded fraction that is not above the running maximum is taken MIN_STEP above it (its
    look did happen and spent alpha); likewise the current one.
    """
    out: list[float] = []
    for x in previous:
        if not (isinstance(x, int | float) and math.isfinite(x) and x > 0):
            continue
        out.append(max(float(x), out[-1] * MIN_STEP) if out else float(x))
    cur = max(float(current), out[-1] * MIN_STEP) if out else float(current)
    return out, cur


#: Levels the repeated p-value is bracketed on. A fixed ladder, so the boundaries of earlier
#: looks at each level are cached across looks: a new look costs one boundary per rung tried.
_LADDER = tuple(float(x) for x in np.exp(np.linspace(math.log(1e-6), math.log(0.999), 64)))


def repeated_p_value(
    z: float, fractions: Sequence[float], kind: Spending, final: bool, floor: float
) -> float:
    """Smallest alpha at which this look's boundary is crossed (Jennison & Turnbull 9.1).

    Bisection over a fixed ladder of levels, then log-linear interpolation of the boundary
    between the two rungs that bracket |z|; never below ``floor`` (the fixed-horizon p-value,
    which ignores the looks). ``gst_test`` makes it agree exactly with its decision at alpha.
    """
    def bound(i: int) -> float:
        return float(boundaries(fractions, _LADDER[i], kind, final)[-1])

    lo, hi = 0, len(_LADDER) - 1  # boundaries fall as the level rises
    if bound(hi) > abs(z):
        return 1.0
    if bound(lo) <= abs(z):
        return floor
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if bound(mid) <= abs(z) else (mid, hi)
    c_lo, c_hi = bound(lo), bound(hi)  # c_lo > |z| >= c_hi
    w = (c_lo - abs(z)) / (c_lo - c_hi) if c_lo > c_hi else 1.0
    log_p = (1 - w) * math.log(_LADDER[lo]) + w * math.log(_LADDER[hi])
    return max(floor, math.exp(log_p))


def gst_test(
    control: SampleMean,
    treatment: SampleMean,
    *,
    alpha: float,
    power: float,
    fixed_info: float,
    look: int,
    max_looks: int,
    kind: Spending = "obf",
    previous_fractions: Sequence[float] | None = None,
    futility: Spending | None = None,
    names: tuple[str, str] = ("champion", "challenger"),
    final: bool | None = None,
    repeated_p: bool = True,
) -> EffectResult:
    """Group-sequential look at the difference of means, monitored on the information scale.

    Information is 1/Var(difference), so the same code serves rates and means and any allocation
    ratio. The maximum information is the fixed design's ``fixed_info`` times the inflation factor
    that keeps ``power`` with ``max_looks`` looks. Earlier looks are taken at
    ``previous_fractions`` as recorded, required after the first look (a guess of equally spaced
    looks would over-spend alpha when they bunch late: ValueError); this look at its observed
    fraction. The look is final when the
    planned information is reached, ``look >= max_looks`` or ``final`` says so; it then spends all
    remaining alpha. The interval is the repeated confidence interval lift +- c_k sqrt(V), valid at
    every look, and the p-value the repeated p-value (``repeated_p=False``: the fixed-horizon
    one, for simulations that only need the decision). With ``futility`` (a beta spending shape) a
    non-binding lower bound l_k is added (``futility.py``): z <= l_k marks the look ``futile``.
    """
    res = base_result("gst", control, treatment, alpha, names)
    reason = unanalysable(control, treatment)
    if reason:
        return _replace(res, reason=reason)
    v0, v1 = arm_variances(control, treatment)
    var = robust_variance(control, treatment)
    if futility:
        theta, infl = futility_design(max_looks, alpha, power, kind, futility)
    else:
        infl = inflation_factor(max_looks, alpha, power, kind)
    observed = information(control, treatment) / (infl * fixed_info)
    is_final = bool(observed >= 1.0 or look >= max_looks or final)
    if previous_fractions is None and look > 1:
        raise ValueError(
            f"gst_test look={look}: previous_fractions (the information fractions observed at "
            f"looks 1..{look - 1}, as each look's details['info_fraction'] records them) is "
            "required; assuming equally spaced looks inflates alpha when looks bunch late")
    prev, t = monotone_fractions(previous_fractions or [], observed)
    upper = boundaries([*prev, t], alpha, kind, final=is_final)
    c = float(upper[-1])
    lift = treatment.mean - control.mean
    z = lift / math.sqrt(var)
    extra: dict[str, float | bool] = {}
    if futility:
        low = c if is_final else float(
            futility_bounds([*prev, t], upper, 1 - power, futility, theta, final=False)[-1])
        low = -math.inf if low >= c and not is_final else low  # no futility region at this look
        extra = {"futility_bound": low, "futile": bool(abs(z) < c and z <= low)}
    rel, rel_ci = relative_ci(control.mean, treatment.mean, v0, v1, lambda v: c * math.sqrt(v))
    p_fixed = float(2 * stats.norm.sf(abs(z)))
    significant = bool(abs(z) >= c)
    p = repeated_p_value(z, [*prev, t], kind, is_final, p_fixed) if repeated_p else p_fixed
    if repeated_p:  # exact agreement with the decision at alpha, whatever the interpolation
        p = min(p, alpha) if significant else max(p, math.nextafter(alpha, 1.0))
    return _replace(
        res, lift=lift, ci=(lift - c * math.sqrt(var), lift + c * math.sqrt(var)), rel_lift=rel,
        rel_ci=rel_ci, p_value=p, significant=significant,
        details={"z": z, "boundary": c, "info_fraction": t, "observed_fraction": observed,
                 "final": is_final, "look": look, "p_fixed_horizon": p_fixed, **extra},
    )
