"""Boundary maths shared by the group-sequential test (``gst``) and its futility bounds.

Lan-DeMets spending functions and the recursive numerical integration of the Brownian score
process S(t) = Z(t) sqrt(t) over the continuation region (Jennison & Turnbull 2000, ch. 19), with
scipy's normal distribution and root finder. At look k with information fraction t_k the two-sided
efficacy boundary c_k solves P(no earlier crossing, |Z_k| >= c_k) = a(t_k) - a(t_{k-1}), so any
look schedule works: the fractions are whatever information was actually observed. Fractions
above 1 (a run that over-ran its planned information) are allowed; a(t) = alpha there. A final
look spends all the alpha that is left, whatever its fraction.

Both ``gst`` and ``futility`` import from here (and nothing here imports them).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import optimize, special, stats

Spending = Literal["obf", "pocock"]
Z_CAP = 40.0  # a boundary nothing crosses (alpha increment ~ 0)
_N_GRID = 201  # matches the published K=5 tables to 1e-4 (as 401 did) at a quarter of the cost
_State = tuple[tuple[float, ...], npt.NDArray | None, npt.NDArray | None, float]


def spent(t: npt.ArrayLike, alpha: float, kind: Spending = "obf") -> npt.NDArray:
    """Cumulative two-sided alpha spent at information fraction t (Lan-DeMets).

    Each side spends alpha/2 with the OBF-type 2 - 2 Phi(z_{1-alpha/4} / sqrt(t)) or the
    Pocock-type (alpha/2) ln(1 + (e - 1) t), the convention of gsDesign's sfLDOF/sfLDPocock and
    R's ldbounds, so boundaries match their published tables. t >= 1 spends all of alpha.
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


def exit_probs(
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


def advance(
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


def solve_bound(
    grid: npt.NDArray | None, mass: npt.NDArray | None, t_prev: float, t: float, inc: float
) -> float:
    """The z boundary at fraction t that spends exactly ``inc`` more alpha."""
    if inc <= 1e-13:
        return Z_CAP

    def excess(c: float) -> float:
        b = c * math.sqrt(t)
        return sum(exit_probs(grid, mass, -b, b, t_prev, t, 0.0)) - inc

    if excess(Z_CAP) > 0:
        return Z_CAP
    if excess(1e-6) < 0:  # more alpha left than this look can use: reject everything
        return 1e-6
    return float(optimize.brentq(excess, 1e-6, Z_CAP, xtol=1e-10))


@lru_cache(maxsize=4096)
def _prefix(fractions: tuple[float, ...], alpha: float, kind: Spending) -> _State:
    """Bounds of the non-final looks at ``fractions`` plus the integration state after them.

    Cached per prefix, so a canary that adds one look at a time solves one new boundary a look.
    """
    if not fractions:
        return (), None, None, 0.0
    bounds, grid, mass, _ = _prefix(fractions[:-1], alpha, kind)
    t_prev = fractions[-2] if len(fractions) > 1 else 0.0
    t = fractions[-1]
    a_prev = float(spent(t_prev, alpha, kind)) if t_prev > 0 else 0.0
    c = solve_bound(grid, mass, t_prev, t, float(spent(t, alpha, kind)) - a_prev)
    grid, mass = advance(grid, mass, -c, c, t_prev, t, 0.0)
    return (*bounds, c), grid, mass, float(spent(t, alpha, kind))


def check_fractions(fractions: npt.ArrayLike) -> tuple[float, ...]:
    """The fractions as a tuple, or ValueError unless they are positive and increasing."""
    fr = tuple(float(round(x, 12)) for x in np.asarray(fractions, dtype=float).ravel())
    if not fr or fr[0] <= 0 or any(b <= a for a, b in zip(fr, fr[1:], strict=False)):
        raise ValueError(f"fractions must be positive and increasing, got {fr}")
    return fr


def boundaries(
    fractions: npt.ArrayLike, alpha: float, kind: Spending = "obf", final: bool | None = None
) -> npt.NDArray:
    """Two-sided z boundaries for looks at increasing information fractions.

    ``final`` (default: the last fraction is >= 1) makes the last look spend all remaining alpha.
    """
    fr = check_fractions(fractions)
    last_is_final = fr[-1] >= 1.0 if final is None else final
    if not last_is_final:
        return np.array(_prefix(fr, float(alpha), kind)[0])
    bounds, grid, mass, a_prev = _prefix(fr[:-1], float(alpha), kind)
    t_prev = fr[-2] if len(fr) > 1 else 0.0
    c = solve_bound(grid, mass, t_prev, fr[-1], float(alpha) - a_prev)
    return np.array([*bounds, c])


def rejection_probability(
    bounds: npt.ArrayLike, fractions: npt.ArrayLike, drift: float, upper_only: bool = True
) -> float:
    """P(crossing) when Z(t) sqrt(t) drifts at ``drift`` per unit information fraction."""
    grid = mass = None
    t_prev, total = 0.0, 0.0
    for c, t in zip(np.asarray(bounds), np.asarray(fractions), strict=True):
        b = float(c) * math.sqrt(t)
        up, down = exit_probs(grid, mass, -b, b, t_prev, float(t), drift)
        total += up if upper_only else up + down
        grid, mass = advance(grid, mass, -float(c), float(c), t_prev, float(t), drift)
        t_prev = float(t)
    return total
