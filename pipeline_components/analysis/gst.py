"""Group-sequential test with Lan-DeMets alpha spending (efficacy bounds, two-sided).

When the maximum sample size is known, spending alpha over planned looks buys more power than an
always-valid test. Boundaries come from the standard recursive numerical integration of the
Brownian score process S(t) = Z(t) sqrt(t) over the continuation region (Jennison & Turnbull 2000,
ch. 19), with scipy's normal distribution and root finder. At look k with information fraction
t_k the boundary c_k solves P(no earlier crossing, |Z_k| >= c_k) = a(t_k) - a(t_{k-1}).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import optimize, special, stats

from pipeline_components.analysis.fixed import (
    EffectResult,
    _replace,
    base_result,
    relative_ci,
    unanalysable,
)
from pipeline_components.analysis.summaries import SampleMean

Spending = Literal["obf", "pocock"]
_Z_CAP = 40.0  # a boundary nothing crosses (alpha increment ~ 0)
_N_GRID = 401


def spent(t: npt.ArrayLike, alpha: float, kind: Spending = "obf") -> npt.NDArray:
    """Cumulative two-sided alpha spent at information fraction t (Lan-DeMets).

    Each side spends alpha/2 with the OBF-type 2 - 2 Phi(z_{1-alpha/4} / sqrt(t)) or the
    Pocock-type (alpha/2) ln(1 + (e - 1) t), the convention of gsDesign's sfLDOF/sfLDPocock and
    R's ldbounds, so boundaries match their published tables.
    """
    ta = np.clip(np.asarray(t, dtype=float), 1e-12, 1.0)
    if kind == "obf":
        return 4.0 * stats.norm.sf(stats.norm.isf(alpha / 4.0) / np.sqrt(ta))
    return alpha * np.log1p((math.e - 1.0) * ta)


def _trapezoid_weights(grid: npt.NDArray) -> npt.NDArray:
    w = np.full(grid.size, grid[1] - grid[0])
    w[[0, -1]] *= 0.5
    return w


def _continuation_grid(lo: float, hi: float, t: float, drift: float) -> npt.NDArray:
    """S-scale grid over the continuation region (lo, hi) in z, cut where the density is ~0."""
    m, sd = drift * t, math.sqrt(t)
    a, b = max(lo * sd, m - 9.0 * sd), min(hi * sd, m + 9.0 * sd)
    return np.linspace(a, b, _N_GRID) if b > a else np.linspace(m - 1e-9, m + 1e-9, _N_GRID)


def _exit_probs(
    grid: npt.NDArray | None, mass: npt.NDArray | None, lo_s: float, hi_s: float,
    t_prev: float, t: float, drift: float,
) -> tuple[float, float]:
    """P(S(t) >= hi_s), P(S(t) <= lo_s), jointly with no earlier crossing (S-scale bounds)."""
    sd = math.sqrt(t - t_prev)
    if grid is None or mass is None:  # first look: S(t) ~ N(drift t, t)
        m = drift * t
        return float(stats.norm.sf((hi_s - m) / sd)), float(stats.norm.cdf((lo_s - m) / sd))
    mu = grid + drift * (t - t_prev)
    up = float(mass @ special.ndtr((mu - hi_s) / sd))
    down = float(mass @ special.ndtr((lo_s - mu) / sd))
    return up, down


def _advance(
    grid: npt.NDArray | None, mass: npt.NDArray | None, lo: float, hi: float, t_prev: float,
    t: float, drift: float,
) -> tuple[npt.NDArray, npt.NDArray]:
    """Sub-density (times quadrature weights) of S(t) on the continuation region (lo, hi) in z."""
    new = _continuation_grid(lo, hi, t, drift)
    sd = math.sqrt(t - t_prev)
    if grid is None or mass is None:
        dens = stats.norm.pdf((new - drift * t) / sd) / sd
    else:
        # scipy's normal pdf is exp(-x^2/2)/sqrt(2 pi); written out here to skip its per-call checks
        x = (new[:, None] - grid[None, :] - drift * (t - t_prev)) / sd
        kern = np.exp(-0.5 * x * x) / (sd * math.sqrt(2.0 * math.pi))
        dens = kern @ mass
    return new, dens * _trapezoid_weights(new)


def _solve_bound(
    grid: npt.NDArray | None, mass: npt.NDArray | None, t_prev: float, t: float, inc: float
) -> float:
    """The z boundary at fraction t that spends exactly ``inc`` more alpha."""
    if inc <= 1e-13:
        return _Z_CAP

    def excess(c: float) -> float:
        b = c * math.sqrt(t)
        return sum(_exit_probs(grid, mass, -b, b, t_prev, t, 0.0)) - inc

    if excess(_Z_CAP) > 0:
        return _Z_CAP
    return float(optimize.brentq(excess, 1e-6, _Z_CAP, xtol=1e-10))


@lru_cache(maxsize=256)
def _bounds_cached(fractions: tuple[float, ...], alpha: float, kind: Spending) -> tuple[float, ...]:
    cum = spent(np.array(fractions), alpha, kind)
    cum[-1] = alpha if fractions[-1] >= 1.0 else cum[-1]
    grid = mass = None
    t_prev, a_prev, out = 0.0, 0.0, []
    for t, a in zip(fractions, cum, strict=True):
        c = _solve_bound(grid, mass, t_prev, t, float(a - a_prev))
        out.append(float(c))
        grid, mass = _advance(grid, mass, -c, c, t_prev, t, 0.0)
        t_prev, a_prev = t, float(a)
    return tuple(out)


def boundaries(fractions: npt.ArrayLike, alpha: float, kind: Spending = "obf") -> npt.NDArray:
    """Two-sided z boundaries for looks at increasing information fractions in (0, 1]."""
    fr = tuple(float(round(x, 12)) for x in np.asarray(fractions, dtype=float))
    if not fr or any(b <= a for a, b in zip(fr, fr[1:], strict=False)) or fr[0] <= 0 or fr[-1] > 1:
        raise ValueError(f"fractions must increase within (0, 1], got {fr}")
    return np.array(_bounds_cached(fr, float(alpha), kind))


def rejection_probability(
    bounds: npt.ArrayLike, fractions: npt.ArrayLike, drift: float, upper_only: bool = True
) -> float:
    """P(crossing) when Z(t) sqrt(t) drifts at ``drift`` per unit information fraction."""
    grid = mass = None
    t_prev, total = 0.0, 0.0
    for c, t in zip(np.asarray(bounds), np.asarray(fractions), strict=True):
        b = float(c) * math.sqrt(t)
        up, down = _exit_probs(grid, mass, -b, b, t_prev, float(t), drift)
        total += up if upper_only else up + down
        grid, mass = _advance(grid, mass, -float(c), float(c), t_prev, float(t), drift)
        t_prev = float(t)
    return total


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
) -> EffectResult:
    """Group-sequential look at the difference of means, monitored on the information scale.

    Information is 1/Var(difference), so the same code serves rates and means and any allocation
    ratio. The maximum information is the fixed design's ``fixed_info`` times the inflation factor
    that keeps ``power`` with ``max_looks`` equally spaced looks. Earlier looks are taken at
    ``previous_fractions`` (default: equally spaced up to now). The interval is the repeated
    confidence interval lift +- c_k sqrt(V), valid at every look. With ``futility`` (a beta
    spending shape) a non-binding lower bound l_k is added (``futility.py``): z <= l_k marks the
    look ``futile`` (the challenger cannot be shown better), and the maximum information grows to
    keep the power.
    """
    res = base_result("gst", control, treatment, alpha, names)
    reason = unanalysable(control, treatment)
    if reason:
        return _replace(res, reason=reason)
    v0, v1 = control.variance / control.n, treatment.variance / treatment.n
    var = v0 + v1
    if futility:
        from pipeline_components.analysis.futility import futility_bounds, futility_design

        theta, infl = futility_design(max_looks, alpha, power, kind, futility)
    else:
        infl = inflation_factor(max_looks, alpha, power, kind)
    max_info = infl * fixed_info
    t = min(1.0 / var / max_info, 1.0)
    final = t >= 1.0 or look >= max_looks
    t = 1.0 if final else t
    prev = [x for x in (previous_fractions or [t * j / look for j in range(1, look)]) if x < t]
    upper = boundaries([*prev, t], alpha, kind)
    c = float(upper[-1])
    lift = treatment.mean - control.mean
    z = lift / math.sqrt(var)
    extra: dict[str, float | bool] = {}
    if futility:
        low = c if final else float(
            futility_bounds([*prev, t], upper, 1 - power, futility, theta, final=False)[-1])
        low = -math.inf if low >= c and not final else low  # no futility region at this look
        extra = {"futility_bound": low, "futile": bool(abs(z) < c and z <= low)}
    rel, rel_ci = relative_ci(control.mean, treatment.mean, v0, v1, lambda v: c * math.sqrt(v))
    return _replace(
        res, lift=lift, ci=(lift - c * math.sqrt(var), lift + c * math.sqrt(var)), rel_lift=rel,
        rel_ci=rel_ci, p_value=float(2 * stats.norm.sf(abs(z))), significant=bool(abs(z) >= c),
        details={"z": z, "boundary": c, "info_fraction": t, "final": final, "look": look,
                 **extra},
    )
