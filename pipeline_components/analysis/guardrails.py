"""Guardrails: non-inferiority of the challenger's error rate and p99 latency, valid under peeking.

Each guardrail has three outcomes. ``pass``: the challenger is shown to be no worse than the
champion plus the margin. ``breach``: it is shown to be worse than champion plus margin (rollback
now). ``inconclusive``: neither yet, which blocks promotion but is no reason to stop.

The canary looks at every step, so both are built to stay valid however often they are read,
and both respect that a user's requests are not independent (the user is the unit that was
randomised; one user with a broken device makes many errors):

* Error rate = errors / requests per arm, a ratio of per-user sums. Its variance is the
  delta-method (cluster-robust) one, Var(sum_i (e_i - r n_i)) / (sum_i n_i)^2, and the decision
  uses the always-valid mixture confidence sequence of ``sequential`` (prior sd = the margin):
  the interval covers the true difference at every look at once with probability 1 - alpha.
* p99 latency: distribution-free order-statistic bounds of each quantile on the effective number
  of requests (requests / design effect of the exceedance indicator within users), each at level
  1 - alpha_k/2, with alpha_k = alpha 6/(pi^2 k^2) at look k: the alphas of all looks sum to
  alpha (a union bound), so no number of looks inflates it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

from pipeline_components.analysis import codes
from pipeline_components.analysis.sequential import halfwidth, log_mixture_lr

Status = Literal["pass", "breach", "inconclusive"]


@dataclass(frozen=True)
class GuardrailResult:
    name: str
    variant: str
    control_value: float
    treatment_value: float
    margin: float
    status: Status
    p_noninferior: float = float("nan")
    p_breach: float = float("nan")
    bound: tuple[float, float] = (float("nan"), float("nan"))
    reason: str | None = None


def ratio_and_variance(errors: npt.ArrayLike, requests: npt.ArrayLike) -> tuple[float, float]:
    """sum(e)/sum(n) over units and its cluster-robust (delta-method) variance."""
    e, n = np.asarray(errors, dtype=float), np.asarray(requests, dtype=float)
    total = n.sum()
    r = e.sum() / total
    resid = e - r * n
    k = e.size
    var = float(np.square(resid - resid.mean()).sum()) * k / (k - 1) / total**2
    floor = _smoothed(e.sum(), total)  # no errors yet is not certainty: a binomial floor
    return float(r), max(var, floor)


def _smoothed(events: float, total: float) -> float:
    p = (events + 1.0) / (total + 2.0)
    return p * (1 - p) / total


def look_alpha(alpha: float, look: int) -> float:
    """alpha 6/(pi^2 k^2): summed over looks k = 1, 2, ... it is alpha."""
    return alpha * 6.0 / (math.pi**2 * max(look, 1) ** 2)


def error_rate_guardrail(
    control: tuple[npt.ArrayLike, npt.ArrayLike], treatment: tuple[npt.ArrayLike, npt.ArrayLike],
    margin: float, alpha: float, variant: str = "challenger", min_units: int = 20,
) -> GuardrailResult:
    """Always-valid non-inferiority of the error rate; each arm is (errors, requests) per unit."""
    (e0, n0), (e1, n1) = (tuple(np.asarray(a, dtype=float) for a in arm)
                          for arm in (control, treatment))
    r0 = float(e0.sum() / n0.sum()) if n0.sum() else float("nan")
    r1 = float(e1.sum() / n1.sum()) if n1.sum() else float("nan")
    if min(e0.size, e1.size) < min_units:
        return GuardrailResult("error_rate", variant, r0, r1, margin, "inconclusive",
                               reason=codes.NOT_ENOUGH_DATA)
    _, v0 = ratio_and_variance(e0, n0)
    _, v1 = ratio_and_variance(e1, n1)
    var, d = v0 + v1, r1 - r0
    tau2 = max(margin, 1e-3) ** 2
    hw = float(halfwidth(var, tau2, alpha))
    lo, hi = d - hw, d + hw
    p_shift = min(1.0, math.exp(-float(log_mixture_lr(d - margin, var, tau2))))
    p_ni, p_br = (p_shift, 1.0) if d < margin else (1.0, p_shift)
    status: Status = "pass" if hi < margin else "breach" if lo > margin else "inconclusive"
    return GuardrailResult("error_rate", variant, r0, r1, margin, status, p_ni, p_br, (lo, hi))


def design_effect(values: npt.ArrayLike, units: npt.ArrayLike | None) -> float:
    """Var of a mean of ``values`` with clustering by ``units`` over the iid variance (>= 1)."""
    x = np.asarray(values, dtype=float)
    if units is None or x.size < 2:
        return 1.0
    iid = x.var(ddof=1)
    if not iid > 0:
        return 1.0
    resid = pd.Series(x - x.mean()).groupby(np.asarray(units)).sum().to_numpy()
    clustered = float(np.square(resid).sum()) * resid.size / max(resid.size - 1, 1)
    return max(1.0, clustered / (iid * (x.size - 1)))


def quantile_bounds(
    x: npt.ArrayLike, q: float, confidence: float, units: npt.ArrayLike | None = None
) -> tuple[float, float]:
    """One-sided-at-``confidence`` lower and upper bounds of the q-quantile (NaN if too few).

    Order statistics at the binomial ranks of the effective sample size n / design effect (the
    exceedance indicator's, within ``units``); with no clustering the classic exact bounds.
    """
    arr = np.sort(np.asarray(x, dtype=float))
    if arr.size < 2:
        return float("nan"), float("nan")
    point = float(np.quantile(arr, q))
    units_arr = None if units is None else np.asarray(units)[np.argsort(np.asarray(x))]
    n_eff = max(1, int(arr.size / design_effect(arr > point, units_arr)))
    scale = arr.size / n_eff
    k_lo = int(stats.binom.ppf(1 - confidence, n_eff, q))  # 1-based rank: P(X_(k) <= xi) >= c
    k_hi = int(stats.binom.ppf(confidence, n_eff, q)) + 1  # P(X_(k) >= xi) >= c
    low = arr[max(int(math.floor(k_lo * scale)) - 1, 0)] if k_lo >= 1 else float("nan")
    high = arr[min(int(math.ceil(k_hi * scale)) - 1, arr.size - 1)] if k_hi <= n_eff \
        else float("nan")
    return float(low), float(high)


def latency_guardrail(
    control_ms: npt.ArrayLike, treatment_ms: npt.ArrayLike, margin_ms: float, alpha: float,
    quantile: float = 0.99, variant: str = "challenger", *, look: int = 1,
    control_units: npt.ArrayLike | None = None, treatment_units: npt.ArrayLike | None = None,
) -> GuardrailResult:
    """Non-inferiority of the challenger's latency quantile, q1 - q0 < margin, at look ``look``."""
    c, t = np.asarray(control_ms, dtype=float), np.asarray(treatment_ms, dtype=float)
    q0 = float(np.quantile(c, quantile)) if c.size else float("nan")
    q1 = float(np.quantile(t, quantile)) if t.size else float("nan")
    conf = 1 - look_alpha(alpha, look) / 2
    lo0, hi0 = quantile_bounds(c, quantile, conf, control_units)
    lo1, hi1 = quantile_bounds(t, quantile, conf, treatment_units)
    diff_hi, diff_lo = hi1 - lo0, lo1 - hi0
    name = f"latency_p{round(quantile * 100):d}"
    if not (np.isfinite(diff_hi) or np.isfinite(diff_lo)):
        return GuardrailResult(name, variant, q0, q1, margin_ms, "inconclusive",
                               reason=codes.NOT_ENOUGH_DATA)
    status: Status = "inconclusive"
    if np.isfinite(diff_hi) and diff_hi < margin_ms:
        status = "pass"
    elif np.isfinite(diff_lo) and diff_lo > margin_ms:
        status = "breach"
    return GuardrailResult(name, variant, q0, q1, margin_ms, status, bound=(diff_lo, diff_hi))
