"""Non-binding futility bounds for the group-sequential test (beta spending).

A canary whose challenger cannot be shown better should be rolled back early, not run to the
horizon. Futility bounds l_k spend the type-II error beta = 1 - power under the design
alternative (drift theta per unit information fraction): P_theta(first exit below l_k at look k)
= b(t_k) - b(t_{k-1}), with the same OBF- or Pocock-type spending shapes as alpha. They are
*non-binding*: the efficacy bounds are the ones of ``gst.boundaries`` computed as if futility
never stopped, so the type-I error stays at or below alpha whether or not a run obeys them.
theta (hence the maximum information) is the one where the last futility bound meets the last
efficacy bound, so the final look always decides; gsDesign calls this test.type=4.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from scipy import optimize, stats

from pipeline_components.analysis.boundary import (
    Spending,
    advance,
    boundaries,
    exit_probs,
    spent,
)

_TOO_SMALL = 50.0  # marks a theta for which futility would swallow the whole region


_Prefix = tuple[tuple[float, ...], npt.NDArray | None, npt.NDArray | None, float] | None


def _solve_lower(
    grid: npt.NDArray | None, mass: npt.NDArray | None, t_prev: float, t: float, inc: float,
    top: float, theta: float,
) -> float | None:
    """The lower z bound at fraction t spending ``inc`` of beta (None: futility swallows all)."""
    def excess(lz: float) -> float:
        return exit_probs(grid, mass, lz * math.sqrt(t), math.inf, t_prev, t, theta)[1] - inc

    if excess(top) < 0:
        return None
    return float(optimize.brentq(excess, -20.0, top, xtol=1e-9)) if excess(-20.0) < 0 else -20.0


@lru_cache(maxsize=4096)
def _prefix(
    fr: tuple[float, ...], up: tuple[float, ...], beta: float, kind: Spending, theta: float
) -> _Prefix:
    """Non-final lower bounds at ``fr`` and the integration state after them (cached per prefix,
    so a canary adding one look at a time solves one bound per look)."""
    if not fr:
        return (), None, None, 0.0
    prev = _prefix(fr[:-1], up[:-1], beta, kind, theta)
    if prev is None:
        return None
    bounds, grid, mass, b_prev = prev
    t_prev, t = (fr[-2] if len(fr) > 1 else 0.0), fr[-1]
    cum = float(spent(t, 2.0 * beta, kind)) / 2.0  # one-sided: the per-side shape of ``spent``
    lz = _solve_lower(grid, mass, t_prev, t, cum - b_prev, up[-1], theta)
    if lz is None:
        return None
    grid, mass = advance(grid, mass, lz, up[-1], t_prev, t, theta)
    return (*bounds, lz), grid, mass, cum


def futility_bounds(
    fractions: npt.ArrayLike, upper: npt.ArrayLike, beta: float, kind: Spending, theta: float,
    final: bool = True,
) -> npt.NDArray:
    """Lower z bounds l_k spending ``beta`` under drift ``theta``; the last one is free if final."""
    fr = tuple(float(x) for x in np.asarray(fractions, dtype=float))
    up = tuple(float(x) for x in np.asarray(upper, dtype=float))
    if not final:
        got = _prefix(fr, up, float(beta), kind, float(theta))
        return np.full(len(fr), _TOO_SMALL) if got is None else np.array(got[0])
    head = _prefix(fr[:-1], up[:-1], float(beta), kind, float(theta))
    if head is None:
        return np.full(len(fr), _TOO_SMALL)
    bounds, grid, mass, b_prev = head
    t_prev = fr[-2] if len(fr) > 1 else 0.0
    cum = float(spent(fr[-1], 2.0 * beta, kind)) / 2.0
    lz = _solve_lower(grid, mass, t_prev, fr[-1], cum - b_prev, 20.0, float(theta))
    return np.full(len(fr), _TOO_SMALL) if lz is None else np.array([*bounds, lz])


@lru_cache(maxsize=64)
def futility_design(
    looks: int, alpha: float, power: float, efficacy: Spending, futility: Spending
) -> tuple[float, float]:
    """(theta, inflation factor) of a design with ``looks`` equally spaced looks."""
    fr = np.arange(1, looks + 1) / looks
    up = boundaries(fr, alpha, efficacy)  # the shared maths: no import of gst, no cycle
    fixed = float(stats.norm.isf(alpha / 2) + stats.norm.isf(1 - power))

    def gap(theta: float) -> float:
        return float(futility_bounds(fr, up, 1 - power, futility, theta)[-1] - up[-1])

    theta = float(optimize.brentq(gap, 0.8 * fixed, 3.0 * fixed, xtol=1e-8))
    return theta, (theta / fixed) ** 2


def decision_probabilities(
    upper: npt.ArrayLike, lower: npt.ArrayLike, fractions: npt.ArrayLike, drift: float
) -> tuple[float, float]:
    """(P(stop above the upper bounds), P(stop below the lower bounds)) with binding bounds."""
    grid = mass = None
    t_prev, p_up, p_down = 0.0, 0.0, 0.0
    for u, lz, t in zip(np.asarray(upper), np.asarray(lower), np.asarray(fractions), strict=True):
        sd = math.sqrt(float(t))
        up, down = exit_probs(grid, mass, float(lz) * sd, float(u) * sd, t_prev, float(t), drift)
        p_up, p_down = p_up + up, p_down + down
        grid, mass = advance(grid, mass, float(lz), float(u), t_prev, float(t), drift)
        t_prev = float(t)
    return p_up, p_down
