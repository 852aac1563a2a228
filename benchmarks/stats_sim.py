"""Monte Carlo calibration of abx's decisions, run through the production path (issue 14).

Every simulated look calls the functions ``analyze_frames`` calls for the primary metric:
``effects.primary_test`` (msprt | gst | fixed, as configured), ``effects.holm``,
``reasons.effect_reasons`` and ``decision.variant_verdict``, with the look history the canary
records (``canary.info_fractions``) and the canary's last look as ``max_looks``. Only the data
preparation is skipped: the arms arrive as ``SampleMean`` summaries of simulated units.

Streams: binary at a 10% base rate; a heavy-tailed revenue-like metric (10% buyers x lognormal
basket); a clustered metric (each unit's mean over 1-20 requests sharing a user effect). Look
schedules, as fractions of the default gst design's maximum information: ``equal10`` (10 equal
looks), ``late5`` (0.2, 0.7, 0.8, 0.9, 1.0) and ``canary5`` (the canary's ramp: challenger shares
5/25/50/50/50% with the step sizes of ``simulate.requests_for_step``). A run stops at its first
promote or rollback; one that never stops counts at its last look. Printed per method: the A/A
false decision rate (any significant effect) with its 95% Clopper-Pearson upper bound, power
(promotions) at lift = MDE and 2 x MDE, and the median units-to-decision (both arms) twice: over
2 n_fh, the fixed-horizon units with *equal* arms (the figure the first runs printed), and over
the units a fixed-horizon test needs under the schedule's *own* allocation
(``fixed_horizon_units``: the canary's 5/25/50% challenger shares need more units for the same
information), the fair comparison. Each schedule also gets the earliest look at which any level-
alpha test could promote in half the runs (``earliest_median_look``): no design decides sooner.
Run: ``python -m benchmarks stats_sim [--quick]``.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import optimize, stats
from statsmodels.stats.proportion import proportion_confint

from pipeline_components.analysis.decision import Comparison, variant_verdict
from pipeline_components.analysis.effects import holm, primary_test
from pipeline_components.analysis.futility import futility_design
from pipeline_components.analysis.planning import fixed_information
from pipeline_components.analysis.reasons import effect_reasons
from pipeline_components.analysis.summaries import SampleMean
from pipeline_components.config import Config, config_from_mapping
from pipeline_components.experiment.canary import info_fractions

ALPHA, POWER = 0.05, 0.8
Arr = npt.NDArray[np.float64]
METHODS = {"msprt": {"method": "msprt"}, "gst": {"method": "gst"}, "fixed": {"method": "fixed"},
           "gst-obf": {"method": "gst", "gst_spending": "obf", "gst_futility": "none"}}


@dataclass(frozen=True)
class Stream:
    name: str
    sd: float
    mde: float
    draw: Callable[[np.random.Generator, int, int, float], Arr] | None  # (reps, n, lift)
    binary_p: float | None = None


def _revenue(rng: np.random.Generator, reps: int, n: int, lift: float) -> Arr:
    return (rng.random((reps, n)) < 0.1) * rng.lognormal(3.0, 1.0, (reps, n)) + lift


def _clustered(rng: np.random.Generator, reps: int, n: int, lift: float) -> Arr:
    k = rng.integers(1, 21, (reps, n))
    return rng.normal(0.0, 1.0, (reps, n)) + rng.normal(0.0, 2.0, (reps, n)) / np.sqrt(k) + lift


REV_SD = math.sqrt(0.1 * math.exp(8.0) - (0.1 * math.exp(3.5)) ** 2)
CLU_SD = math.sqrt(1.0 + 4.0 * np.mean(1.0 / np.arange(1, 21)))
STREAMS = [Stream("binary 10%", 0.3, 0.01, None, 0.1),
           Stream("revenue (heavy tail)", REV_SD, 0.1 * REV_SD, _revenue),
           Stream("clustered (requests in users)", CLU_SD, 0.1 * CLU_SD, _clustered)]


def schedules(n_fh: int) -> dict[str, list[tuple[int, int]]]:
    """Cumulative (n champion, n challenger) per look; the last look carries the max information."""
    infl = {k: futility_design(k, ALPHA, POWER, "pocock", "obf")[1] for k in (5, 10)}
    out = {}
    for name, fr in (("equal10", np.arange(1, 11) / 10), ("late5", [0.2, 0.7, 0.8, 0.9, 1.0])):
        n = [max(2, round(f * infl[len(fr)] * n_fh)) for f in fr]
        out[name] = [(x, x) for x in n]
    shares, sizes = [0.05, 0.25, 0.5, 0.5, 0.5], [2000, 880, 440, 440, 440]
    n0 = np.cumsum([s * (1 - f) for s, f in zip(sizes, shares, strict=True)])
    n1 = np.cumsum([s * f for s, f in zip(sizes, shares, strict=True)])
    scale = infl[5] * n_fh / 2 / (1 / (1 / n0[-1] + 1 / n1[-1]))  # info ~ 1/(1/n0 + 1/n1)
    out["canary5"] = [(round(a * scale), round(b * scale)) for a, b in zip(n0, n1, strict=True)]
    return out


def _harmonic(n0: float, n1: float) -> float:
    """n0 n1 / (n0 + n1): information of a difference of means, in units of 1/sd^2."""
    return n0 * n1 / (n0 + n1) if n0 + n1 > 0 else 0.0


def fixed_horizon_units(sched: list[tuple[int, int]], n_fh: int) -> float:
    """Units (both arms) at which ``sched``'s allocation reaches the fixed-horizon information.

    n_fh per arm assumes equal arms (information n_fh / 2 sd^2); a fixed-horizon test run on the
    same allocation as the schedule needs more units when the arms are unequal (information is
    1/(1/n0 + 1/n1), led by the small arm). Units arrive at each step's own split, so the point
    is solved exactly inside the step that crosses it: this is where a fixed test planned on
    this ramp would stop (it need not wait for a step end).
    """
    need, p0, p1 = n_fh / 2, 0.0, 0.0
    for n0, n1 in sched:
        if _harmonic(n0, n1) >= need:
            a, b = n0 - p0, n1 - p1
            x = optimize.brentq(lambda x, p0=p0, p1=p1, a=a, b=b:
                                _harmonic(p0 + a * x, p1 + b * x) - need, 0.0, 1.0)
            return p0 + p1 + (a + b) * x
        p0, p1 = float(n0), float(n1)
    raise ValueError(f"schedule never reaches the fixed-horizon information ({n_fh} per arm)")


def earliest_median_look(sched: list[tuple[int, int]], n_fh: int, mult: float) -> int:
    """First look (1-based) at which a level-ALPHA test could promote in half the runs at
    lift = mult x MDE; no sequential design can have its median promotion earlier.

    At look k the data's sufficient statistic is Z_k ~ N(drift_k, 1) with drift_k =
    mult (z_{1-a/2} + z_power) sqrt(I_k / I_fixed); the most powerful level-alpha test on it
    (Neyman-Pearson, one-sided) has power 1/2 exactly when drift_k = z_{1-alpha}. "Promoted by
    look k" is such a test: it has level <= alpha and, the data being Brownian, the likelihood
    ratio of everything seen up to look k depends on Z_k alone.
    """
    drift = mult * (stats.norm.isf(ALPHA / 2) + stats.norm.isf(1 - POWER))
    for k, (n0, n1) in enumerate(sched, 1):
        if drift * math.sqrt(_harmonic(n0, n1) / (n_fh / 2)) >= stats.norm.isf(ALPHA):
            return k
    return len(sched)


def arm_sums(s: Stream, rng: np.random.Generator, reps: int, ns: list[int], lift: float) -> tuple:
    """Cumulative (sum, sum of squares) at each look's n, per replicate: arrays (reps, looks)."""
    if s.binary_p is not None:
        steps = np.diff([0, *ns])
        x = np.cumsum(rng.binomial(steps, s.binary_p + lift, (reps, len(ns))), axis=1)
        return x.astype(float), x.astype(float)
    assert s.draw is not None
    v = s.draw(rng, reps, ns[-1], lift)
    idx = np.array(ns) - 1
    return np.cumsum(v, axis=1)[:, idx], np.cumsum(v * v, axis=1)[:, idx]


def run_one(cfg: Config, sched: list[tuple[int, int]], sums: tuple, binary: bool) -> tuple:
    """One experiment through the production decision: (significant, promoted, units used)."""
    steps: list[dict] = []
    (s0, q0), (s1, q1) = sums
    for k, (n0, n1) in enumerate(sched, 1):
        c, t = SampleMean(n0, s0[k - 1], q0[k - 1]), SampleMean(n1, s1[k - 1], q1[k - 1])
        hist = info_fractions(steps).get("challenger", [])
        eff = primary_test(cfg, c, t, binary, 1, k, hist, "challenger", len(sched),
                           repeated_p=False)
        cmp = holm([Comparison("challenger", eff)], ALPHA, cfg.analysis.method)[0]
        steps.append({"decision": {"comparisons": [{"variant": "challenger",
                                                    "effect": {"details": eff.details}}]}})
        verdict = variant_verdict(effect_reasons(cmp, cfg.analysis.min_units_per_arm),
                                  "challenger")
        if verdict != "continue":
            return cmp.effect.significant, verdict == "promote", n0 + n1
    return False, False, sched[-1][0] + sched[-1][1]


def simulate(cfg: Config, s: Stream, sched: list[tuple[int, int]], lift: float, reps: int,
             seed: int) -> Arr:
    rng = np.random.default_rng(seed)
    a0 = arm_sums(s, rng, reps, [n for n, _ in sched], 0.0)
    a1 = arm_sums(s, rng, reps, [n for _, n in sched], lift)
    out = [run_one(cfg, sched, ((a0[0][r], a0[1][r]), (a1[0][r], a1[1][r])),
                   s.binary_p is not None) for r in range(reps)]
    return np.array(out, dtype=float)


def config(s: Stream, method: str) -> Config:
    kind = "binary" if s.binary_p is not None else "continuous"
    analysis = {**METHODS[method], "mde": s.mde, "metric_type": kind, "alpha": ALPHA,
                "power": POWER, "max_looks": 10}
    return config_from_mapping({"analysis": analysis})


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def report(quick: bool, seed: int, only: list[int] | None = None,
           scheds: list[str] | None = None, methods: list[str] | None = None) -> Iterator[str]:
    """The table rows; ``only``/``scheds``/``methods`` restrict it (seeds do not depend on them)."""
    reps_aa, reps_h1 = (300, 100) if quick else (2000, 400)
    yield f"stats_sim: alpha={ALPHA}, power={POWER}, A/A reps={reps_aa}, H1 reps={reps_h1}"
    for si, s in enumerate(STREAMS):
        if only is not None and si not in only:
            continue
        n_fh = math.ceil(2 * s.sd**2 * fixed_information(s.mde, ALPHA, POWER))
        yield ""
        yield f"## {s.name}: sd={s.sd:.4g}, MDE={s.mde:.4g}, n_fh/arm={n_fh}"
        yield _row(["schedule", "method", "A/A false decisions (95% upper)", "power @MDE",
                    "median n/2n_fh @MDE", "median n/n_fh,same @MDE", "power @2MDE",
                    "median n/2n_fh @2MDE", "median n/n_fh,same @2MDE"])
        yield _row(["---"] * 9)
        notes = []
        for sn, sched in schedules(n_fh).items():
            if scheds is not None and sn not in scheds:
                continue
            same = fixed_horizon_units(sched, n_fh)
            looks = ", ".join(f"{(a + b) / same:.2f}" for a, b in sched)
            floor = [(a + b) / same for a, b in
                     (sched[earliest_median_look(sched, n_fh, m) - 1] for m in (1, 2))]
            notes.append(f"{sn}: n_fh,same = {same:.0f} units = {same / (2 * n_fh):.2f} x 2n_fh; "
                         f"looks at {looks} n_fh,same; earliest possible median promotion "
                         f"{floor[0]:.2f} @MDE, {floor[1]:.2f} @2MDE")
            for mi, method in enumerate(METHODS):
                if (method == "gst-obf" and sn == "equal10") or (
                        methods is not None and method not in methods):
                    continue
                cfg, sd = config(s, method), seed + 1000 * si + 10 * mi
                aa = simulate(cfg, s, sched, 0.0, reps_aa, sd)
                hi = proportion_confint(int(aa[:, 0].sum()), reps_aa, 0.05, method="beta")[1]
                cells = [sn, method, f"{aa[:, 0].mean():.2%} (<= {hi:.2%})"]
                for mult in (1, 2):
                    h1 = simulate(cfg, s, sched, mult * s.mde, reps_h1, sd + mult)
                    med = float(np.median(h1[:, 2]))
                    cells += [f"{h1[:, 1].mean():.1%}", f"{med / (2 * n_fh):.2f}",
                              f"{med / same:.2f}"]
                yield _row(cells)
        yield ""
        yield from notes


def welch_check(reps: int, seed: int) -> Iterator[str]:
    """A/A rejection of one fixed-horizon test of the revenue metric at its planned horizon,
    equal arms vs the canary's unequal ones: Welch (what ``method: fixed`` runs), Student
    (pooled) and the sequential tests' max(unpooled, pooled) variance with a normal reference.
    Separates the test from the simulation: the horizon here is a fixed n, not an estimate."""
    s = STREAMS[1]
    n_fh = math.ceil(2 * s.sd**2 * fixed_information(s.mde, ALPHA, POWER))
    need = fixed_information(s.mde, ALPHA, POWER)
    yield ""
    yield f"## fixed-horizon test alone, {s.name}, A/A at the planned horizon, {reps} reps"
    yield _row(["arms (n0, n1)", "Welch (up / down)", "Student pooled", "max(unpooled, pooled), z"])
    yield _row(["---"] * 4)
    rng = np.random.default_rng(seed + 7)
    for sn, sched in schedules(n_fh).items():
        if sn == "late5":
            continue
        n0, n1 = next((a, b) for a, b in sched if 1 / (s.sd**2 * (1 / a + 1 / b)) >= need)
        hits = np.zeros(4)
        for _ in range(reps // 1000):
            x0, x1 = s.draw(rng, 1000, n0, 0.0), s.draw(rng, 1000, n1, 0.0)  # type: ignore[misc]
            d = x1.mean(1) - x0.mean(1)
            v0, v1 = x0.var(1, ddof=1) / n0, x1.var(1, ddof=1) / n1
            df = (v0 + v1) ** 2 / (v0**2 / (n0 - 1) + v1**2 / (n1 - 1))
            pooled = ((n0 - 1) * v0 * n0 + (n1 - 1) * v1 * n1) / (n0 + n1 - 2) * (1 / n0 + 1 / n1)
            tw = d / np.sqrt(v0 + v1)
            rej_w = 2 * stats.t.sf(np.abs(tw), df) < ALPHA
            hits += [np.sum(rej_w & (tw > 0)), np.sum(rej_w & (tw < 0)),
                     np.sum(2 * stats.t.sf(np.abs(d / np.sqrt(pooled)), n0 + n1 - 2) < ALPHA),
                     np.sum(2 * stats.norm.sf(np.abs(d / np.sqrt(np.maximum(v0 + v1, pooled))))
                            < ALPHA)]
        r = hits / (reps // 1000 * 1000)
        hi = proportion_confint(int(hits[0] + hits[1]), reps // 1000 * 1000, 0.05, method="beta")[1]
        yield _row([f"{sn}: ({n0}, {n1})",
                    f"{r[0] + r[1]:.2%} (<= {hi:.2%}; {r[0]:.2%} / {r[1]:.2%})",
                    f"{r[2]:.2%}", f"{r[3]:.2%}"])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks stats_sim", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer replicates")
    ap.add_argument("--seed", type=int, default=20261201)
    ap.add_argument("--streams", default=None,
                    help="comma-separated stream indices (0 binary, 1 revenue, 2 clustered); the "
                         "seeds do not depend on it, so parts can run in parallel processes")
    ap.add_argument("--schedules", default=None, help="comma-separated: equal10,late5,canary5")
    ap.add_argument("--methods", default=None, help="comma-separated: " + ",".join(METHODS))
    ap.add_argument("--welch", type=int, default=0, metavar="REPS",
                    help="also check the fixed-horizon test alone at its horizon (REPS A/A runs)")
    args = ap.parse_args(argv)
    only = [int(x) for x in args.streams.split(",")] if args.streams else None
    scheds = args.schedules.split(",") if args.schedules else None
    methods = args.methods.split(",") if args.methods else None
    t0 = time.perf_counter()
    for line in report(args.quick, args.seed, only, scheds, methods):
        print(line, flush=True)
    for line in welch_check(args.welch, args.seed) if args.welch else []:
        print(line, flush=True)
    print(f"\n(stats_sim {'--quick ' if args.quick else ''}took {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
