"""Shadow comparison: both models scored the same requests, so compare them pair by pair.

In shadow mode the challenger scores every request in the background and users only see the
champion. Each labelled request then gives a *paired* observation, which removes the between-user
variance an A/B split has to average out: far fewer samples for the same precision, and no user
exposed to the challenger. Two paired tests: McNemar (statsmodels, exact binomial on the
discordant pairs) on correct/incorrect at threshold 0.5, and a t-test on the per-unit mean of the
log-loss difference (challenger - champion; negative is better). Units, not requests, are the
independent observations of the second test. The second test decides; like the primary metric it
is always valid under repeated looks when ``tau2`` is given (the mixture SPRT of ``sequential``
on the paired mean difference, prior sd ``analysis.shadow_tau``), else a one-sample t-test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar

from pipeline_components.analysis import codes
from pipeline_components.analysis.sequential import halfwidth, log_mixture_lr

MIN_UNITS = 10


@dataclass(frozen=True)
class ShadowResult:
    n_pairs: int
    n_units: int
    champion_only_correct: int = 0
    challenger_only_correct: int = 0
    mcnemar_p: float = float("nan")
    log_loss_diff: float = float("nan")
    ci: tuple[float, float] = (float("nan"), float("nan"))
    p_value: float = float("nan")
    direction: int = 0  # +1 challenger better, -1 worse, 0 undecided
    reason: str | None = None


def _log_loss(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return -(y * np.log(p) + (1 - y) * np.log1p(-p))


def shadow_compare(pairs: pd.DataFrame, alpha: float, tau2: float | None = None) -> ShadowResult:
    """Paired tests on rows (one per request) of unit_id, outcome, p_champion, p_challenger."""
    df = pairs.dropna(subset=["outcome", "p_champion", "p_challenger"])
    n_units = int(df["unit_id"].nunique())
    if n_units < MIN_UNITS:
        return ShadowResult(len(df), n_units, reason=codes.NOT_ENOUGH_DATA)
    y = df["outcome"].to_numpy(dtype=float)
    ok0 = (df["p_champion"].to_numpy() >= 0.5) == (y == 1)
    ok1 = (df["p_challenger"].to_numpy() >= 0.5) == (y == 1)
    table = [[int((ok0 & ok1).sum()), int((ok0 & ~ok1).sum())],
             [int((~ok0 & ok1).sum()), int((~ok0 & ~ok1).sum())]]
    mc_p = float(mcnemar(table, exact=True).pvalue)
    diff = _log_loss(df["p_challenger"].to_numpy(float), y) - _log_loss(
        df["p_champion"].to_numpy(float), y)
    per_unit = pd.Series(diff).groupby(df["unit_id"].to_numpy()).mean().to_numpy()
    if np.allclose(per_unit, per_unit[0]):
        return ShadowResult(len(df), n_units, table[0][1], table[1][0], mc_p,
                            float(per_unit.mean()), reason=codes.ZERO_VARIANCE)
    mean = float(per_unit.mean())
    if tau2 is None:
        res = stats.ttest_1samp(per_unit, 0.0)
        ci_t = res.confidence_interval(1 - alpha)
        p, ci = float(res.pvalue), (float(ci_t.low), float(ci_t.high))
    else:
        var = float(per_unit.var(ddof=1)) / per_unit.size
        p = min(1.0, math.exp(-float(log_mixture_lr(mean, var, tau2))))
        hw = float(halfwidth(var, tau2, alpha))
        ci = (mean - hw, mean + hw)
    direction = 0 if p > alpha else (1 if mean < 0 else -1)
    return ShadowResult(len(df), n_units, table[0][1], table[1][0], mc_p, mean, ci, p, direction)
