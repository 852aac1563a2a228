"""Guardrails under peeking and clustering: the production guardrails against per-request tests.

Seeded Monte Carlo with users as the randomised unit: each user has an own error propensity
(Beta, ICC ~0.2, 1-9 requests) or device speed (lognormal scale, 10 requests). The guardrail is
read at 5 looks; a run "passes"/"breaches" at its first look that says so. Printed for the
production functions (``guardrails.error_rate_guardrail`` / ``latency_guardrail``: per-user,
always-valid) and, as the baseline in the same run, the per-request fixed tests at every look
(statsmodels' score test; scipy's order-statistic quantile bounds), with 95% Clopper-Pearson
upper bounds: false passes of a challenger worse by exactly the margin, false breaches at margin
0, and passes of an equal challenger (power). Run: ``python -m benchmarks guardrail_sim``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator

import numpy as np
from scipy import stats
from statsmodels.stats.proportion import proportion_confint, test_proportions_2indep

from pipeline_components.analysis.guardrails import error_rate_guardrail, latency_guardrail

ALPHA, LOOKS = 0.05, 5


def _errors(rng: np.random.Generator, users: int, rate: float) -> tuple[np.ndarray, np.ndarray]:
    p = rng.beta(4 * rate, 4 * (1 - rate), users)
    n = rng.integers(1, 10, users)
    return rng.binomial(n, p).astype(float), n.astype(float)


def _per_request_error(e: tuple, margin: float) -> str:
    """The replaced rule: score tests on request totals against the margin, both ways."""
    (e0, n0), (e1, n1) = e
    kw = {"compare": "diff", "value": margin, "method": "score"}
    with np.errstate(divide="ignore", invalid="ignore"):
        ni = test_proportions_2indep(e1.sum(), n1.sum(), e0.sum(), n0.sum(), alternative="smaller",
                                     **kw).pvalue
        br = test_proportions_2indep(e1.sum(), n1.sum(), e0.sum(), n0.sum(), alternative="larger",
                                     **kw).pvalue
    return "pass" if ni < ALPHA else "breach" if br < ALPHA else "inconclusive"


def _per_request_latency(c: np.ndarray, t: np.ndarray, margin: float) -> str:
    def bounds(x: np.ndarray) -> tuple[float, float]:
        q = float(np.quantile(x, 0.99))
        lo = stats.quantile_test(x, q=q, p=0.99, alternative="greater")
        hi = stats.quantile_test(x, q=q, p=0.99, alternative="less")
        return (float(lo.confidence_interval(1 - ALPHA / 2).low),
                float(hi.confidence_interval(1 - ALPHA / 2).high))
    (lo0, hi0), (lo1, hi1) = bounds(c), bounds(t)
    if np.isfinite(hi1 - lo0) and hi1 - lo0 < margin:
        return "pass"
    return "breach" if np.isfinite(lo1 - hi0) and lo1 - hi0 > margin else "inconclusive"


def error_runs(reps: int, worse: float, margin: float, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out: dict[str, list[str]] = {"production": [], "per-request": []}
    per_look = 150
    for _ in range(reps):
        a0 = _errors(rng, LOOKS * per_look, 0.05)
        a1 = _errors(rng, LOOKS * per_look, 0.05 + worse)
        first = {"production": "inconclusive", "per-request": "inconclusive"}
        for k in range(1, LOOKS + 1):
            m = k * per_look
            arms = ((a0[0][:m], a0[1][:m]), (a1[0][:m], a1[1][:m]))
            got = {"production": error_rate_guardrail(arms[0], arms[1], margin, ALPHA).status,
                   "per-request": _per_request_error(arms, margin)}
            for key, status in got.items():
                if first[key] == "inconclusive":
                    first[key] = status
        for key in out:
            out[key].append(first[key])
    return {k: np.array(v) for k, v in out.items()}


def latency_runs(reps: int, shift: float, margin: float, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out: dict[str, list[str]] = {"production": [], "per-request": []}
    users, per_user = 100, 10

    def arm(n_users: int, s: float) -> tuple[np.ndarray, np.ndarray]:
        scale = np.repeat(rng.lognormal(0.0, 0.8, n_users), per_user)
        lat = scale * rng.lognormal(np.log(30.0), 0.3, n_users * per_user)
        return lat + s, np.repeat(np.arange(n_users), per_user)

    for _ in range(reps):
        (c, cu), (t, tu) = arm(LOOKS * users, 0.0), arm(LOOKS * users, shift)
        first = {"production": "inconclusive", "per-request": "inconclusive"}
        for k in range(1, LOOKS + 1):
            m = k * users * per_user
            got = {"production": latency_guardrail(c[:m], t[:m], margin, ALPHA, look=k,
                                                   control_units=cu[:m],
                                                   treatment_units=tu[:m]).status,
                   "per-request": _per_request_latency(c[:m], t[:m], margin)}
            for key, status in got.items():
                if first[key] == "inconclusive":
                    first[key] = status
        for key in out:
            out[key].append(first[key])
    return {k: np.array(v) for k, v in out.items()}


def _rate(statuses: np.ndarray, status: str) -> str:
    hits = int((statuses == status).sum())
    hi = proportion_confint(hits, statuses.size, 0.05, method="beta")[1]
    return f"{hits / statuses.size:.1%} (<= {hi:.1%})"


def report(quick: bool, seed: int) -> Iterator[str]:
    r_err, r_lat = (200, 60) if quick else (1000, 200)
    yield f"guardrail_sim: alpha={ALPHA}, looks={LOOKS}, error reps={r_err}, latency reps={r_lat}"
    yield "| guardrail | scenario | target | production | per-request fixed (baseline) |"
    yield "| --- | --- | --- | --- | --- |"
    cases: list[tuple[str, str, str, str, Callable[[], dict[str, np.ndarray]]]] = [
        ("error rate", "worse by the margin 0.02", "pass <= 5%", "pass",
         lambda: error_runs(r_err, 0.02, 0.02, seed)),
        ("error rate", "equal, margin 0", "breach <= 5%", "breach",
         lambda: error_runs(r_err, 0.0, 0.0, seed + 1)),
        ("error rate", "equal, margin 0.02", "pass (power)", "pass",
         lambda: error_runs(r_err, 0.0, 0.02, seed + 2)),
        ("p99 latency", "worse by the margin 20 ms", "pass <= 5%", "pass",
         lambda: latency_runs(r_lat, 20.0, 20.0, seed + 3)),
        ("p99 latency", "equal, margin 40 ms", "pass (power)", "pass",
         lambda: latency_runs(r_lat, 0.0, 40.0, seed + 4)),
    ]
    for name, scenario, target, status, run in cases:
        res = run()
        yield (f"| {name} | {scenario} | {target} | {_rate(res['production'], status)} | "
               f"{_rate(res['per-request'], status)} |")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks guardrail_sim", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer replicates")
    ap.add_argument("--seed", type=int, default=20261201)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    for line in report(args.quick, args.seed):
        print(line, flush=True)
    print(f"\n(guardrail_sim {'--quick ' if args.quick else ''}took "
          f"{time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
