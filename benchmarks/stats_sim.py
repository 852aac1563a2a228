"""Monte Carlo calibration of abx's experiment tests (issue 6, "Measured").

Simulates many experiments at once (vectorised numpy, block sums per look) on three synthetic
streams: a binary conversion at a 10% base rate, a heavy-tailed revenue-like metric (10% buyers,
lognormal basket) and a latency-like lognormal; a lift shifts every treatment value (binary: the
rate) by a constant, keeping the shape of the tail. For naive peeking (the fixed test at every
look), the fixed horizon, the mSPRT and the group-sequential test (OBF- and Pocock-type alpha
spending; "+fut" adds non-binding futility: Pocock efficacy with OBF-type beta spending, the
pipeline's gst default, and OBF efficacy with Pocock-type futility) it prints:

* the realised A/A false positive rate with 1, 10 and 100 looks, and its 95% Clopper-Pearson
  upper bound (target: <= 5%, bound <= 5.5%; naive peeking is the harness check, ~19% at 10 looks);
* power and the median samples-to-decision as a fraction of the fixed-horizon n at lift = MDE
  and 2 x MDE (a run that never stops counts at its horizon);
* CUPED's variance reduction at covariate correlation 0.5 and 0.7.

The decision rules are the package's own vectorised functions (``sequential.msprt_reject``,
``gst.boundaries``, ``cuped.adjust_arrays``). Every look skips arms below 100 units, as the
pipeline does (``analysis.min_units_per_arm``). Run: ``python -m benchmarks stats_sim [--quick]``.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from pipeline_components.analysis.cuped import adjust_arrays
from pipeline_components.analysis.futility import futility_bounds, futility_design
from pipeline_components.analysis.gst import Spending, boundaries, inflation_factor
from pipeline_components.analysis.planning import fixed_information
from pipeline_components.analysis.sequential import msprt_reject, tau2_for_horizon
from pipeline_components.analysis.summaries import diff_and_variance

ALPHA, POWER, MIN_N = 0.05, 0.8, 100
BLOCKS_PER_N = 100  # the fixed-horizon n is 100 blocks; the mSPRT runs to 2 x n (200 blocks)
LOOKS = (1, 10, 100)
Arr = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Metric:
    """A synthetic stream: its draws, true mean/sd and the MDE it is powered for."""

    name: str
    mean: float
    sd: float
    mde: float
    draw: Callable[[np.random.Generator, tuple[int, int], float], Arr]  # unused when binary_p
    binary_p: float | None = None

    @property
    def n_fixed(self) -> int:
        n = 2 * self.sd**2 * fixed_information(self.mde, ALPHA, POWER)
        return int(math.ceil(n / BLOCKS_PER_N) * BLOCKS_PER_N)


def _revenue(rng: np.random.Generator, shape: tuple[int, int], lift: float) -> Arr:
    return (rng.random(shape) < 0.1) * rng.lognormal(3.0, 1.0, shape) + lift


def _latency(rng: np.random.Generator, shape: tuple[int, int], lift: float) -> Arr:
    return rng.lognormal(math.log(50.0), 0.5, shape) + lift


REVENUE_MEAN = 0.1 * math.exp(3.5)
REVENUE_SD = math.sqrt(0.1 * math.exp(8.0) - REVENUE_MEAN**2)
LATENCY_MEAN = 50.0 * math.exp(0.125)
LATENCY_SD = LATENCY_MEAN * math.sqrt(math.exp(0.25) - 1.0)


def metrics() -> list[Metric]:
    return [
        Metric("binary 10%", 0.1, math.sqrt(0.09), 0.01, _latency, binary_p=0.1),
        Metric("revenue (heavy tail)", REVENUE_MEAN, REVENUE_SD, 0.1 * REVENUE_SD, _revenue),
        Metric("latency (lognormal)", LATENCY_MEAN, LATENCY_SD, 0.1 * LATENCY_SD, _latency),
    ]


def block_sums(
    m: Metric, rng: np.random.Generator, reps: int, lift: float
) -> tuple[Arr, Arr, Arr]:
    """Cumulative (n, sum, sum of squares) at the end of each of 2 x 100 blocks, one arm."""
    b, nb = m.n_fixed // BLOCKS_PER_N, 2 * BLOCKS_PER_N
    if m.binary_p is not None:
        s = rng.binomial(b, m.binary_p + lift, (reps, nb)).astype(float)
        ss = s
    else:
        x = m.draw(rng, (reps, nb * b), lift).reshape(reps, nb, b)
        s, ss = x.sum(axis=2), np.square(x).sum(axis=2)
    n = np.broadcast_to(np.arange(1, nb + 1, dtype=float) * b, (reps, nb))
    return n, np.cumsum(s, axis=1), np.cumsum(ss, axis=1)


def first_stop(reject: npt.NDArray[np.bool_], looks: npt.NDArray, horizon: int) -> npt.NDArray:
    """Block index of the first rejecting look, or the horizon when none rejects."""
    any_r = reject.any(axis=1)
    idx = np.argmax(reject, axis=1)
    return np.where(any_r, looks[idx], horizon)


def designs(m: Metric) -> dict[tuple[str, int], tuple[npt.NDArray, Callable[..., npt.NDArray]]]:
    """(method, looks) -> (look blocks, rule(diff, var, look_index) -> reject)."""
    b = m.n_fixed // BLOCKS_PER_N
    z = stats.norm.isf(ALPHA / 2)
    tau2 = tau2_for_horizon(1.0 / fixed_information(m.mde, ALPHA, POWER), ALPHA)
    out: dict[tuple[str, int], tuple[npt.NDArray, Callable[..., npt.NDArray]]] = {}

    def grid(k: int, span: int) -> npt.NDArray:
        blocks = np.unique(np.round(np.arange(1, k + 1) * span / k).astype(int))
        return blocks[blocks * b >= MIN_N]

    out[("fixed", 1)] = (np.array([BLOCKS_PER_N]), lambda d, v, i: np.abs(d) >= z * np.sqrt(v))
    for k in LOOKS:
        out[("naive", k)] = (grid(k, BLOCKS_PER_N), lambda d, v, i: np.abs(d) >= z * np.sqrt(v))
        out[("msprt", k)] = (
            grid(k, 2 * BLOCKS_PER_N), lambda d, v, i: msprt_reject(d, v, tau2, ALPHA)
        )
        for kind in ("obf", "pocock"):
            span = int(round(inflation_factor(k, ALPHA, POWER, kind) * BLOCKS_PER_N))
            looks = grid(k, span)
            c = boundaries(looks / span, ALPHA, kind)
            out[(f"gst-{kind}", k)] = (looks, lambda d, v, i, c=c: np.abs(d) >= c[i] * np.sqrt(v))
        out[("gst-pocock+fut", k)] = _futility_design(k, grid, "pocock", "obf")
        out[("gst-obf+fut", k)] = _futility_design(k, grid, "obf", "pocock")
    return out


def _futility_design(
    k: int, grid: Callable[[int, int], npt.NDArray], eff: Spending, fut: Spending
) -> tuple:
    """Efficacy bounds ``eff`` plus non-binding futility ``fut`` (beta spending)."""
    theta, infl = futility_design(k, ALPHA, POWER, eff, fut)
    span = int(round(infl * BLOCKS_PER_N))
    looks = grid(k, span)
    fr = looks / span
    c = boundaries(fr, ALPHA, eff)
    low = futility_bounds(fr, c, 1 - POWER, fut, theta)
    low = np.where(low >= c, -np.inf, low)
    low[-1] = c[-1]

    def rule(d: npt.NDArray, v: npt.NDArray, i: int) -> tuple[npt.NDArray, npt.NDArray]:
        z = d / np.sqrt(v)
        return np.abs(z) >= c[i], z <= low[i]

    return looks, rule


def evaluate(m: Metric, lift: float, reps: int, seed: int, chunk: int) -> dict:
    """Run ``reps`` experiments; per design: share rejecting, share rejecting up, stop blocks."""
    rng = np.random.default_rng(seed)
    des = designs(m)
    acc: dict = {key: ([], [], []) for key in des}
    for start in range(0, reps, chunk):
        r = min(chunk, reps - start)
        n0, s0, ss0 = block_sums(m, rng, r, 0.0)
        n1, s1, ss1 = block_sums(m, rng, r, lift)
        d, v = diff_and_variance(n0, s0, ss0, n1, s1, ss1)
        for key, (looks, rule) in des.items():
            rej, fut = _apply(rule, d, v, looks)
            halt = rej | fut
            stop = first_stop(halt, looks, int(looks[-1]))
            first = np.argmax(halt, axis=1)
            rejected = halt.any(axis=1) & rej[np.arange(r), first]
            up = rejected & (d[np.arange(r), looks[first] - 1] > 0)
            acc[key][0].append(rejected)
            acc[key][1].append(up)
            acc[key][2].append(stop)
    return {k: tuple(np.concatenate(x) for x in v) for k, v in acc.items()}


def _apply(
    rule: Callable[..., object], d: npt.NDArray, v: npt.NDArray, looks: npt.NDArray
) -> tuple[npt.NDArray, npt.NDArray]:
    """(rejects, futility stops), each (reps, looks); rules without futility never stop early."""
    rej, fut = [], []
    for i, j in enumerate(looks):
        out = rule(d[:, j - 1], v[:, j - 1], i)
        r, f = out if isinstance(out, tuple) else (out, np.zeros_like(out, dtype=bool))
        rej.append(r)
        fut.append(f)
    return np.stack(rej, 1), np.stack(fut, 1)


def cuped_reduction(rho: float, reps: int, n: int, seed: int) -> tuple[float, float]:
    """(Monte Carlo variance ratio adjusted/raw of the lift estimate, mean reported reduction)."""
    rng = np.random.default_rng(seed)
    arms = []
    for _ in range(2):
        x = rng.standard_normal((reps, n))
        y = rho * x + math.sqrt(1 - rho**2) * rng.standard_normal((reps, n))
        arms.append((np.full(reps, n), y.sum(1), (y * y).sum(1), x.sum(1), (x * x).sum(1),
                     (x * y).sum(1)))
    _, ((a0, s0, ss0), (a1, s1, ss1)) = adjust_arrays(arms)
    raw = arms[1][1] / n - arms[0][1] / n
    adj = s1 / a1 - s0 / a0
    _, v_adj = diff_and_variance(a0, s0, ss0, a1, s1, ss1)
    _, v_raw = diff_and_variance(*(arms[0][:3]), *(arms[1][:3]))
    return float(np.var(adj) / np.var(raw)), float(np.mean(1 - v_adj / v_raw))


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def report(quick: bool, seed: int) -> Iterator[str]:
    """Yield the printed tables, line by line."""
    reps_aa, reps_h1, chunk = (2_000, 1_000, 1_000) if quick else (20_000, 5_000, 1_000)
    yield f"stats_sim: alpha={ALPHA}, power={POWER}, A/A reps={reps_aa}, H1 reps={reps_h1}"
    for mi, m in enumerate(metrics()):
        yield ""
        yield (f"## {m.name}: mean={m.mean:.4g}, sd={m.sd:.4g}, MDE={m.mde:.4g}, "
               f"fixed n/arm={m.n_fixed}")
        aa = evaluate(m, 0.0, reps_aa, seed + 10 * mi, chunk)
        yield "A/A false positive rate (95% upper bound):"
        yield _row(["method", *[f"{k} look(s)" for k in LOOKS]])
        yield _row(["---"] * (len(LOOKS) + 1))
        for method in ("naive", "fixed", "msprt", "gst-obf", "gst-pocock", "gst-pocock+fut",
                       "gst-obf+fut"):
            cells = []
            for k in LOOKS:
                rej = aa[(method, 1 if method == "fixed" else k)][0]
                hi = proportion_confint(int(rej.sum()), rej.size, alpha=0.05, method="beta")[1]
                cells.append(f"{rej.mean():.2%} (<= {hi:.2%})")
            yield _row([method, *cells])
        for mult in (1, 2):
            h1 = evaluate(m, mult * m.mde, reps_h1, seed + 10 * mi + mult, chunk)
            yield f"lift = {mult} x MDE: power / median samples-to-decision (fraction of fixed n):"
            yield _row(["method", "looks", "power", "median n / fixed n"])
            yield _row(["---"] * 4)
            for key in (("fixed", 1), ("naive", 10), ("msprt", 10), ("msprt", 100),
                        ("gst-obf", 10), ("gst-obf", 100), ("gst-pocock", 10), ("gst-pocock", 100),
                        ("gst-pocock+fut", 10), ("gst-pocock+fut", 100), ("gst-obf+fut", 10),
                        ("gst-obf+fut", 100)):
                _, up, stop = h1[key]
                yield _row([key[0], str(key[1]), f"{up.mean():.1%}",
                            f"{np.median(stop) / BLOCKS_PER_N:.2f}"])
    yield ""
    yield "## CUPED (x, y jointly normal, 2,000 units/arm)"
    yield _row(["rho", "Var ratio adj/raw (MC)", "1 - rho^2", "reported reduction", "rho^2"])
    yield _row(["---"] * 5)
    for rho in (0.5, 0.7):
        ratio, rep = cuped_reduction(rho, 500 if quick else 4000, 2000, seed + 99)
        yield _row([f"{rho}", f"{ratio:.3f}", f"{1 - rho**2:.3f}", f"{rep:.3f}", f"{rho**2:.3f}"])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks stats_sim", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer replicates (~10x faster)")
    ap.add_argument("--seed", type=int, default=20261123)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    for line in report(args.quick, args.seed):
        print(line, flush=True)
    print(f"\n(stats_sim {'--quick ' if args.quick else ''}took {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
