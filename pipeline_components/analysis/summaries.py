"""Sufficient statistics per variant, in frozen dataclasses (the gbstats way).

Every test in this package works from these summaries, never from raw rows: a summary is a few
numbers (count, sum, sum of squares, and the covariate cross terms for CUPED), so it is cheap to
store, to merge across looks and to pass through XCom/JSON. The same formulas take numpy arrays,
which is how ``benchmarks/stats_sim.py`` runs thousands of simulated experiments at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class SampleMean:
    """n, sum and sum of squares of one variant's per-unit metric.

    ``centered_ss`` (the sum of squared deviations from the mean), when known, gives the variance
    without the cancellation of sum_squares - sum^2/n, which loses every digit once the mean is
    large against the spread (1e8 + N(0, 1) has sum_squares ~ 1e19 for a variance of 1).
    ``clusters`` (G, both arms together) marks a cluster-robust summary: its t reference has
    G - 1 degrees of freedom, as statsmodels' cluster-robust inference uses, not the units'.
    """

    n: int
    sum: float
    sum_squares: float
    centered_ss: float | None = None
    clusters: int | None = None  # clusters of the comparison (cluster-robust): t df = G - 1

    @classmethod
    def from_values(cls, values: npt.ArrayLike) -> SampleMean:
        x = np.asarray(values, dtype=float)
        m2 = float(np.square(x - x.mean()).sum()) if x.size else 0.0
        return cls(n=int(x.size), sum=float(x.sum()), sum_squares=float(np.square(x).sum()),
                   centered_ss=m2)

    @property
    def mean(self) -> float:
        return self.sum / self.n if self.n else float("nan")

    @property
    def variance(self) -> float:
        """Unbiased sample variance (ddof=1), as statsmodels and scipy use."""
        if self.centered_ss is not None:
            return self.centered_ss / (self.n - 1) if self.n >= 2 else float("nan")
        return float(sample_variance(self.n, self.sum, self.sum_squares))


@dataclass(frozen=True)
class RegressionSummary:
    """Sums of a metric y and a pre-experiment covariate x per variant (for CUPED)."""

    n: int
    y_sum: float
    y_sum_squares: float
    x_sum: float
    x_sum_squares: float
    xy_sum: float

    @classmethod
    def from_values(cls, y: npt.ArrayLike, x: npt.ArrayLike) -> RegressionSummary:
        ya, xa = np.asarray(y, dtype=float), np.asarray(x, dtype=float)
        if ya.shape != xa.shape:
            raise ValueError(f"y and x differ in shape: {ya.shape} vs {xa.shape}")
        return cls(
            n=int(ya.size),
            y_sum=float(ya.sum()),
            y_sum_squares=float(np.square(ya).sum()),
            x_sum=float(xa.sum()),
            x_sum_squares=float(np.square(xa).sum()),
            xy_sum=float((xa * ya).sum()),
        )

    @property
    def y(self) -> SampleMean:
        return SampleMean(self.n, self.y_sum, self.y_sum_squares)

    @property
    def x(self) -> SampleMean:
        return SampleMean(self.n, self.x_sum, self.x_sum_squares)

    @property
    def covariance(self) -> float:
        """Sample covariance of x and y (ddof=1)."""
        if self.n < 2:
            return float("nan")
        return (self.xy_sum - self.x_sum * self.y_sum / self.n) / (self.n - 1)


def sample_variance(n: npt.ArrayLike, s: npt.ArrayLike, ss: npt.ArrayLike) -> npt.NDArray:
    """Unbiased variance from (n, sum, sum of squares); NaN where n < 2. Works on arrays."""
    n_a = np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        var = (np.asarray(ss, dtype=float) - np.square(s) / n_a) / (n_a - 1.0)
    return np.where(n_a >= 2, np.maximum(var, 0.0), np.nan)


def diff_and_variance(
    n0: npt.ArrayLike, s0: npt.ArrayLike, ss0: npt.ArrayLike,
    n1: npt.ArrayLike, s1: npt.ArrayLike, ss1: npt.ArrayLike,
) -> tuple[npt.NDArray, npt.NDArray]:
    """Difference of means (1 minus 0) and its unpooled variance; the input of every z-type test."""
    n0a, n1a = np.asarray(n0, dtype=float), np.asarray(n1, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = np.asarray(s1) / n1a - np.asarray(s0) / n0a
        var = sample_variance(n1a, s1, ss1) / n1a + sample_variance(n0a, s0, ss0) / n0a
    return diff, var
