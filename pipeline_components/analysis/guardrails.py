"""Guardrails: one-sided non-inferiority tests of the challenger's error rate and p99 latency.

Each guardrail has three outcomes. ``pass``: the challenger is shown to be no worse than the
champion plus the margin (non-inferiority rejected at alpha). ``breach``: it is shown to be worse
than champion plus margin (rollback now). ``inconclusive``: neither yet, which blocks promotion
but is no reason to stop. Operational metrics are per request (a request fails or is slow on its
own), unlike the primary metric, which is per unit.

Error rate: statsmodels' score test for a difference of two proportions against the margin.
p99 latency: distribution-free confidence bounds for each quantile (scipy's ``quantile_test``,
order statistics), each at level 1 - alpha/2, so the bound on the difference holds at 1 - alpha.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import stats
from statsmodels.stats.proportion import test_proportions_2indep

from pipeline_components.analysis import codes

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


def error_rate_guardrail(
    errors: tuple[int, int], requests: tuple[int, int], margin: float, alpha: float,
    variant: str = "challenger", min_requests: int = 20,
) -> GuardrailResult:
    """Non-inferiority of the challenger's error rate; tuples are (champion, challenger)."""
    (e0, e1), (n0, n1) = errors, requests
    r0 = e0 / n0 if n0 else float("nan")
    r1 = e1 / n1 if n1 else float("nan")
    if min(n0, n1) < min_requests:
        return GuardrailResult("error_rate", variant, r0, r1, margin, "inconclusive",
                               reason=codes.NOT_ENOUGH_DATA)
    kw = {"compare": "diff", "value": margin, "method": "score"}
    with np.errstate(divide="ignore", invalid="ignore"):
        ni = test_proportions_2indep(e1, n1, e0, n0, alternative="smaller", **kw)
        br = test_proportions_2indep(e1, n1, e0, n0, alternative="larger", **kw)
    p_ni, p_br = float(ni.pvalue), float(br.pvalue)
    status: Status = "pass" if p_ni < alpha else "breach" if p_br < alpha else "inconclusive"
    return GuardrailResult("error_rate", variant, r0, r1, margin, status, p_ni, p_br)


def quantile_bounds(x: npt.ArrayLike, q: float, confidence: float) -> tuple[float, float]:
    """One-sided-at-``confidence`` lower and upper bounds of the q-quantile (NaN if too few)."""
    arr = np.asarray(x, dtype=float)
    if arr.size < 2:
        return float("nan"), float("nan")
    point = float(np.quantile(arr, q))
    lo = stats.quantile_test(arr, q=point, p=q, alternative="greater")
    hi = stats.quantile_test(arr, q=point, p=q, alternative="less")
    low = float(lo.confidence_interval(confidence).low)
    high = float(hi.confidence_interval(confidence).high)
    return (low if np.isfinite(low) else float("nan"), high if np.isfinite(high) else float("nan"))


def latency_guardrail(
    control_ms: npt.ArrayLike, treatment_ms: npt.ArrayLike, margin_ms: float, alpha: float,
    quantile: float = 0.99, variant: str = "challenger",
) -> GuardrailResult:
    """Non-inferiority of the challenger's latency quantile: q1 - q0 < margin at level alpha."""
    c, t = np.asarray(control_ms, dtype=float), np.asarray(treatment_ms, dtype=float)
    q0 = float(np.quantile(c, quantile)) if c.size else float("nan")
    q1 = float(np.quantile(t, quantile)) if t.size else float("nan")
    lo0, hi0 = quantile_bounds(c, quantile, 1 - alpha / 2)
    lo1, hi1 = quantile_bounds(t, quantile, 1 - alpha / 2)
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
