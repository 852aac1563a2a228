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


def _continuation_grid(c: float, t: float, drift: float) -> npt.NDArray:
    half = min(c * math.sqrt(t), 9.0 * math.sqrt(t) + abs(drift) * t)
    return np.linspace(-half, half, _N_GRID)


def _exit_probs(
    grid: npt.NDArray | None, mass: npt.NDArray | None, b: float, t_prev: float, t: float,
    drift: float,
) -> tuple[float, float]:
    """P(cross the upper / lower S-boundary +-b at time t, not having crossed before)."""
    sd = math.sqrt(t - t_prev)
    if grid is None or mass is None:  # first look: S(t) ~ N(drift t, t)
        m = drift * t
        return float(stats.norm.sf((b - m) / sd)), float(stats.norm.cdf((-b - m) / sd))
    mu = grid + drift * (t - t_prev)
    up = float(mass @ special.ndtr((mu - b) / sd))
    lo = float(mass @ special.ndtr((-b - mu) / sd))
    return up, lo


def _advance(
    grid: npt.NDArray | None, mass: npt.NDArray | None, c: float, t_prev: float, t: float,
    drift: float,
) -> tuple[npt.NDArray, npt.NDArray]:
    """Sub-density (times quadrature weights) of S(t) on the continuation region of look t."""
    new = _continuation_grid(c, t, drift)
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
        return sum(_exit_probs(grid, mass, c * math.sqrt(t), t_prev, t, 0.0)) - inc

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
        grid, mass = _advance(grid, mass, c, t_prev, t, 0.0)
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
        up, lo = _exit_probs(grid, mass, float(c) * math.sqrt(t), t_prev, float(t), drift)
        total += up if upper_only else up + lo
        grid, mass = _advance(grid, mass, float(c), t_prev, float(t), drift)
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
    names: tuple[str, str] = ("champion", "challenger"),
) -> EffectResult:
    """Group-sequential look at the difference of means, monitored on the information scale.

    Information is 1/Var(difference), so the same code serves rates and means and any allocation
    ratio. The maximum information is the fixed design's ``fixed_info`` times the inflation factor
    that keeps ``power`` with ``max_looks`` equally spaced looks. Earlier looks are taken at
    ``previous_fractions`` (default: equally spaced up to now). The interval is the repeated
    confidence interval lift +- c_k sqrt(V), valid at every look.
    """
    res = base_result("gst", control, treatment, alpha, names)
    reason = unanalysable(control, treatment)
    if reason:
        return _replace(res, reason=reason)
    v0, v1 = control.variance / control.n, treatment.variance / treatment.n
    var = v0 + v1
    max_info = inflation_factor(max_looks, alpha, power, kind) * fixed_info
    t = min(1.0 / var / max_info, 1.0)
    final = t >= 1.0 or look >= max_looks
    t = 1.0 if final else t
    prev = [x for x in (previous_fractions or [t * j / look for j in range(1, look)]) if x < t]
    c = float(boundaries([*prev, t], alpha, kind)[-1])
    lift = treatment.mean - control.mean
    z = lift / math.sqrt(var)
    rel, rel_ci = relative_ci(control.mean, treatment.mean, v0, v1, lambda v: c * math.sqrt(v))
    return _replace(
        res, lift=lift, ci=(lift - c * math.sqrt(var), lift + c * math.sqrt(var)), rel_lift=rel,
        rel_ci=rel_ci, p_value=float(2 * stats.norm.sf(abs(z))), significant=bool(abs(z) >= c),
        details={"z": z, "boundary": c, "info_fraction": t, "final": final, "look": look},
    )
