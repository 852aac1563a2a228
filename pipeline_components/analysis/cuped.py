"""CUPED: variance reduction with a pre-experiment covariate (Deng et al. 2013).

y_adj = y - theta (x - mean(x)), theta = cov(x, y) / var(x) pooled over all units. Randomisation
makes x independent of the arm, so the adjusted difference is unbiased and its variance shrinks
by about 1 - rho^2 (rho = corr(x, y)). The adjusted arms come back as ``SampleMean`` summaries,
so every test (fixed, mSPRT, group-sequential) runs on them unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline_components.analysis import codes
from pipeline_components.analysis.summaries import RegressionSummary, SampleMean


@dataclass(frozen=True)
class CupedResult:
    """Adjusted summaries plus theta and the achieved variance reduction of the difference."""

    theta: float
    variance_reduction: float
    control: SampleMean | None
    treatment: SampleMean | None
    reason: str | None = None


def cuped(control: RegressionSummary, treatment: RegressionSummary) -> CupedResult:
    """Adjust both arms; a named reason when the covariate carries no information.

    Works on the centred moments (``RegressionSummary.centred``, pooled with ``merge``), so
    large means do not cancel the variances away.
    """
    if min(control.n, treatment.n) < 2:
        return CupedResult(float("nan"), float("nan"), None, None, codes.NOT_ENOUGH_DATA)
    pooled = control.merge(treatment)
    _, pooled_xx, pooled_xy = pooled.centred
    if not pooled_xx > 0:
        return CupedResult(float("nan"), 0.0, None, None, codes.NO_COVARIATE)
    theta = pooled_xy / pooled_xx
    x_mean = pooled.x_sum / pooled.n
    adjusted = []
    for arm in (control, treatment):
        yy, xx, xy = arm.centred
        m2 = max(yy - 2 * theta * xy + theta**2 * xx, 0.0)
        mean = arm.y_sum / arm.n - theta * (arm.x_sum / arm.n - x_mean)
        adjusted.append(SampleMean(arm.n, arm.n * mean, m2 + arm.n * mean**2, centered_ss=m2))
    c_adj, t_adj = adjusted
    before = control.y.variance / control.n + treatment.y.variance / treatment.n
    after = c_adj.variance / c_adj.n + t_adj.variance / t_adj.n
    reduction = 1.0 - after / before if before > 0 else 0.0
    return CupedResult(float(theta), float(reduction), c_adj, t_adj)
