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
    """Sums of a metric y and a pre-experiment covariate x per variant (for CUPED).

    ``y_m2``, ``x_m2`` and ``xy_m2`` are the centred second moments (sum (y - mean y)^2, sum
    (x - mean x)^2, sum (x - mean x)(y - mean y)); when present every variance and covariance
    comes from them, so a metric or covariate with a large mean (1e8 + N(0, 1)) keeps its
    digits, where sum_squares - sum^2/n cancels to 0. ``merge`` combines two summaries with the
    pairwise (Chan et al.) update, so merged looks or arms stay centred too.
    """

    n: int
    y_sum: float
    y_sum_squares: float
    x_sum: float
    x_sum_squares: float
    xy_sum: float
    y_m2: float | None = None
    x_m2: float | None = None
    xy_m2: float | None = None

    @classmethod
    def from_values(cls, y: npt.ArrayLike, x: npt.ArrayLike) -> RegressionSummary:
        ya, xa = np.asarray(y, dtype=float), np.asarray(x, dtype=float)
        if ya.shape != xa.shape:
            raise ValueError(f"y and x differ in shape: {ya.shape} vs {xa.shape}")
        dy = ya - ya.mean() if ya.size else ya
        dx = xa - xa.mean() if xa.size else xa
        return cls(
            n=int(ya.size),
            y_sum=float(ya.sum()),
            y_sum_squares=float(np.square(ya).sum()),
            x_sum=float(xa.sum()),
            x_sum_squares=float(np.square(xa).sum()),
            xy_sum=float((xa * ya).sum()),
            y_m2=float(np.square(dy).sum()),
            x_m2=float(np.square(dx).sum()),
            xy_m2=float((dx * dy).sum()),
        )

    @property
    def centred(self) -> tuple[float, float, float]:
        """(sum (y - ybar)^2, sum (x - xbar)^2, sum (x - xbar)(y - ybar)); from the raw sums
        (cancellation-prone) only when the summary was built without them."""
        if self.y_m2 is not None and self.x_m2 is not None and self.xy_m2 is not None:
            return self.y_m2, self.x_m2, self.xy_m2
        n = self.n or 1
        return (self.y_sum_squares - self.y_sum**2 / n, self.x_sum_squares - self.x_sum**2 / n,
                self.xy_sum - self.x_sum * self.y_sum / n)

    def merge(self, other: RegressionSummary) -> RegressionSummary:
        """The summary of both samples together (pairwise update of the centred moments)."""
        n = self.n + other.n
        if not self.n or not other.n:
            return self if other.n == 0 else other
        (ya, xa, ca), (yb, xb, cb) = self.centred, other.centred
        dy = other.y_sum / other.n - self.y_sum / self.n
        dx = other.x_sum / other.n - self.x_sum / self.n
        f = self.n * other.n / n
        return RegressionSummary(
            n, self.y_sum + other.y_sum, self.y_sum_squares + other.y_sum_squares,
            self.x_sum + other.x_sum, self.x_sum_squares + other.x_sum_squares,
            self.xy_sum + other.xy_sum, ya + yb + dy * dy * f, xa + xb + dx * dx * f,
            ca + cb + dx * dy * f)

    @property
    def y(self) -> SampleMean:
        return SampleMean(self.n, self.y_sum, self.y_sum_squares, centered_ss=self.centred[0])

    @property
    def x(self) -> SampleMean:
        return SampleMean(self.n, self.x_sum, self.x_sum_squares, centered_ss=self.centred[1])

    @property
    def covariance(self) -> float:
        """Sample covariance of x and y (ddof=1)."""
        if self.n < 2:
            return float("nan")
        return self.centred[2] / (self.n - 1)


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
