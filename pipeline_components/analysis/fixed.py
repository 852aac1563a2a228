"""Fixed-horizon tests of the primary metric: Welch t-test (means), two-proportion z-test (rates).

Both report the absolute lift (treatment minus control) with its confidence interval and the
relative lift with a delta-method interval. The z-test and its interval are statsmodels' own
functions fed with counts; the Welch test is scipy's ``ttest_ind_from_stats``, so the numbers agree
with ``statsmodels.stats.weightstats.ttest_ind(usevar="unequal")`` on the raw data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

from pipeline_components.analysis import codes
from pipeline_components.analysis.summaries import SampleMean


@dataclass(frozen=True)
class EffectResult:
    """One comparison of a treatment against the control on one metric.

    ``reason`` is None when the test ran; otherwise a code from ``codes`` saying why it could not.
    ``lift``/``ci`` are absolute (treatment - control), ``rel_lift``/``rel_ci`` relative to control.
    """

    method: str
    control: str
    treatment: str
    n_control: int
    n_treatment: int
    mean_control: float
    mean_treatment: float
    alpha: float
    lift: float = float("nan")
    ci: tuple[float, float] = (float("nan"), float("nan"))
    rel_lift: float = float("nan")
    rel_ci: tuple[float, float] = (float("nan"), float("nan"))
    p_value: float = float("nan")
    significant: bool = False
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def direction(self) -> int:
        """+1 significant improvement, -1 significant harm, 0 otherwise."""
        if not self.significant:
            return 0
        return 1 if self.lift > 0 else -1


def base_result(
    method: str, control: SampleMean, treatment: SampleMean, alpha: float,
    names: tuple[str, str] = ("champion", "challenger"),
) -> EffectResult:
    """A result with counts and means filled in; tests replace the rest."""
    return EffectResult(
        method=method, control=names[0], treatment=names[1], n_control=control.n,
        n_treatment=treatment.n, mean_control=control.mean, mean_treatment=treatment.mean,
        alpha=alpha,
    )


def unanalysable(control: SampleMean, treatment: SampleMean, min_n: int = 2) -> str | None:
    """Named reason why two summaries cannot be compared, or None.

    Two constant arms with *different* values (0/100 vs 100/100) are not unanalysable: the
    pooled variance of ``arm_variances`` measures them.
    """
    if min(control.n, treatment.n) < min_n:
        return codes.NOT_ENOUGH_DATA
    if control.variance == 0 and treatment.variance == 0 and control.mean == treatment.mean:
        return codes.ZERO_VARIANCE
    return None


def arm_variances(control: SampleMean, treatment: SampleMean) -> tuple[float, float]:
    """Var(mean) per arm (unpooled); the pooled sample's variance when both arms are constant.

    With both arms constant the unpooled variance of the difference is 0 and no test could ever
    decide; the variance of the two arms pooled (which includes the gap between them) is a
    conservative stand-in.
    """
    v0, v1 = control.variance / control.n, treatment.variance / treatment.n
    if v0 + v1 > 0:
        return v0, v1
    n = control.n + treatment.n
    gap = control.n * treatment.n / n * (treatment.mean - control.mean) ** 2
    pooled = gap / (n - 1)
    return pooled / control.n, pooled / treatment.n


def pooled_variance(control: SampleMean, treatment: SampleMean) -> float:
    """Within-arm pooled variance per unit ((n0-1) s0^2 + (n1-1) s1^2) / (n0 + n1 - 2)."""
    n = control.n + treatment.n - 2
    return ((control.n - 1) * control.variance + (treatment.n - 1) * treatment.variance) / n


def information(control: SampleMean, treatment: SampleMean) -> float:
    """1/Var(difference) with the pooled variance: how far along a design is.

    Sequential designs time their looks with it. The pooled estimate leans on the large arm, so
    a small canary arm that happened to draw no outliers of a heavy-tailed metric does not look
    like (and get tested as) a finished experiment; the unpooled one would couple the timing to
    the very noise that makes z large. Falls back to ``arm_variances`` for constant arms.
    """
    pooled = pooled_variance(control, treatment) * (1 / control.n + 1 / treatment.n)
    return 1.0 / (pooled if pooled > 0 else sum(arm_variances(control, treatment)))


def robust_variance(control: SampleMean, treatment: SampleMean) -> float:
    """Var(difference) for sequential z-type tests: the larger of unpooled and pooled.

    Unpooled (Welch) is right when the arms' variances differ; pooled is right under the null of
    equal distributions and is the stable one when an arm is small and heavy-tailed (its own
    variance estimate is then usually too small, which inflates early false positives).
    """
    unpooled = sum(arm_variances(control, treatment))
    return max(unpooled, pooled_variance(control, treatment) * (1 / control.n + 1 / treatment.n))


def relative_ci(
    m0: float, m1: float, var0: float, var1: float, halfwidth_of: Any
) -> tuple[float, tuple[float, float]]:
    """Relative lift m1/m0 - 1 and its delta-method interval; ``halfwidth_of(var)`` sets the width.

    Var(m1/m0) ~= var1/m0^2 + m1^2 var0/m0^4 (first-order Taylor expansion of the ratio).
    """
    if m0 == 0 or not math.isfinite(m0):
        return float("nan"), (float("nan"), float("nan"))
    rel = m1 / m0 - 1.0
    var_rel = var1 / m0**2 + m1**2 * var0 / m0**4
    hw = float(halfwidth_of(var_rel))
    return rel, (rel - hw, rel + hw)


def welch_test(
    control: SampleMean, treatment: SampleMean, alpha: float = 0.05,
    names: tuple[str, str] = ("champion", "challenger"),
) -> EffectResult:
    """Two-sided Welch t-test of mean(treatment) - mean(control) with a t interval.

    Cluster-robust summaries (``SampleMean.clusters`` = G) take G - 1 degrees of freedom: the
    variance is estimated from G cluster sums, however many units they hold.
    """
    res = base_result("welch", control, treatment, alpha, names)
    reason = unanalysable(control, treatment)
    if reason:
        return _replace(res, reason=reason)
    v0, v1 = arm_variances(control, treatment)
    var = v0 + v1
    clusters = control.clusters or treatment.clusters
    if clusters and var > 0:  # cluster-robust: t with G - 1 df, as statsmodels' use_t
        dof = max(clusters - 1.0, 1.0)
        t_stat = (treatment.mean - control.mean) / math.sqrt(var)
        p = 2 * stats.t.sf(abs(t_stat), dof)
    elif control.variance + treatment.variance > 0:
        dof = var**2 / (v1**2 / (treatment.n - 1) + v0**2 / (control.n - 1))
        t_stat, p = stats.ttest_ind_from_stats(
            treatment.mean, math.sqrt(treatment.variance), treatment.n,
            control.mean, math.sqrt(control.variance), control.n, equal_var=False,
        )
    else:  # two constant arms: the pooled t-test
        dof = control.n + treatment.n - 2.0
        t_stat = (treatment.mean - control.mean) / math.sqrt(var)
        p = 2 * stats.t.sf(abs(t_stat), dof)
    q = float(stats.t.ppf(1 - alpha / 2, dof))
    lift = treatment.mean - control.mean
    hw = q * math.sqrt(var)
    rel, rel_ci = relative_ci(control.mean, treatment.mean, v0, v1, lambda v: q * math.sqrt(v))
    return _replace(
        res, lift=lift, ci=(lift - hw, lift + hw), rel_lift=rel, rel_ci=rel_ci, p_value=float(p),
        significant=bool(p < alpha), details={"t": float(t_stat), "df": float(dof)},
    )


def proportion_test(
    control: SampleMean, treatment: SampleMean, alpha: float = 0.05,
    names: tuple[str, str] = ("champion", "challenger"),
) -> EffectResult:
    """Two-sided two-proportion z-test (pooled, statsmodels) with a Wald interval for the lift.

    ``sum`` of each summary is the count of successes (a 0/1 metric per unit).
    """
    res = base_result("ztest", control, treatment, alpha, names)
    reason = unanalysable(control, treatment)
    if reason:
        return _replace(res, reason=reason)
    counts = np.array([treatment.sum, control.sum])
    nobs = np.array([treatment.n, control.n])
    z, p = proportions_ztest(counts, nobs)
    p0, p1 = control.mean, treatment.mean
    v0, v1 = p0 * (1 - p0) / control.n, p1 * (1 - p1) / treatment.n
    # Wald, except for two constant arms (0/n vs n/n), where it has zero width: Agresti-Caffo.
    lo, hi = confint_proportions_2indep(
        treatment.sum, treatment.n, control.sum, control.n,
        method="wald" if v0 + v1 > 0 else "agresti-caffo", compare="diff", alpha=alpha,
    )
    if v0 + v1 == 0:
        v0, v1 = arm_variances(control, treatment)
    zq = float(stats.norm.ppf(1 - alpha / 2))
    rel, rel_ci = relative_ci(p0, p1, v0, v1, lambda v: zq * math.sqrt(v))
    return _replace(
        res, lift=p1 - p0, ci=(float(lo), float(hi)), rel_lift=rel, rel_ci=rel_ci,
        p_value=float(p), significant=bool(p < alpha), details={"z": float(z)},
    )


def _replace(res: EffectResult, **changes: Any) -> EffectResult:
    from dataclasses import replace

    return replace(res, **changes)
