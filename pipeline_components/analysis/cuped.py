"""CUPED: variance reduction with a pre-experiment covariate (Deng et al. 2013).

y_adj = y - theta (x - mean(x)), theta = cov(x, y) / var(x) pooled over all units. Randomisation
makes x independent of the arm, so the adjusted difference is unbiased and its variance shrinks
by about 1 - rho^2 (rho = corr(x, y)). The adjusted arms come back as ``SampleMean`` summaries,
so every test (fixed, mSPRT, group-sequential) runs on them unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pipeline_components.analysis import codes
from pipeline_components.analysis.summaries import RegressionSummary, SampleMean, sample_variance


@dataclass(frozen=True)
class CupedResult:
    """Adjusted summaries plus theta and the achieved variance reduction of the difference."""

    theta: float
    variance_reduction: float
    control: SampleMean | None
    treatment: SampleMean | None
    reason: str | None = None


def adjust_arrays(
    arms: list[tuple[npt.ArrayLike, ...]],
) -> tuple[npt.NDArray, list[tuple[npt.NDArray, npt.NDArray, npt.NDArray]]]:
    """Vectorised CUPED over arms of sums (n, y, yy, x, xx, xy); returns theta and (n, s, ss)."""
    totals = [np.sum([np.asarray(a[i], dtype=float) for a in arms], axis=0) for i in range(6)]
    n, y, yy, x, xx, xy = totals
    with np.errstate(divide="ignore", invalid="ignore"):
        cov = (xy - x * y / n) / (n - 1)
        var_x = sample_variance(n, x, xx)
        theta = np.where(var_x > 0, cov / var_x, 0.0)
        x_mean = x / n
        out = []
        for a_n, a_y, a_yy, a_x, a_xx, a_xy in arms:
            an = np.asarray(a_n, dtype=float)
            vy = sample_variance(an, a_y, a_yy)
            vx = sample_variance(an, a_x, a_xx)
            cxy = (np.asarray(a_xy) - np.asarray(a_x) * np.asarray(a_y) / an) / (an - 1)
            var_adj = np.maximum(vy - 2 * theta * cxy + theta**2 * vx, 0.0)
            mean_adj = np.asarray(a_y) / an - theta * (np.asarray(a_x) / an - x_mean)
            out.append((an, an * mean_adj, (an - 1) * var_adj + an * mean_adj**2))
    return theta, out


def cuped(control: RegressionSummary, treatment: RegressionSummary) -> CupedResult:
    """Adjust both arms; a named reason when the covariate carries no information."""
    if min(control.n, treatment.n) < 2:
        return CupedResult(float("nan"), float("nan"), None, None, codes.NOT_ENOUGH_DATA)
    pooled_x = SampleMean(
        control.n + treatment.n, control.x_sum + treatment.x_sum,
        control.x_sum_squares + treatment.x_sum_squares,
    )
    if not pooled_x.variance > 0:
        return CupedResult(float("nan"), 0.0, None, None, codes.NO_COVARIATE)
    theta, adjusted = adjust_arrays([_sums(control), _sums(treatment)])
    (n0, s0, ss0), (n1, s1, ss1) = adjusted
    c_adj = SampleMean(int(n0), float(s0), float(ss0))
    t_adj = SampleMean(int(n1), float(s1), float(ss1))
    before = control.y.variance / control.n + treatment.y.variance / treatment.n
    after = c_adj.variance / c_adj.n + t_adj.variance / t_adj.n
    reduction = 1.0 - after / before if before > 0 else 0.0
    return CupedResult(float(theta), float(reduction), c_adj, t_adj)


def _sums(s: RegressionSummary) -> tuple[float, ...]:
    return (s.n, s.y_sum, s.y_sum_squares, s.x_sum, s.x_sum_squares, s.xy_sum)
