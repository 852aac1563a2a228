"""Printing of the serving benchmark: per-run lines, median tables, ratios and the issue's goals.

``Tee`` writes everything printed to ``benchmarks/results/serving-<UTC date-time>.txt`` too, with
the date, the command, the commit and ``uptime``'s load average at the start and at the end.
"""

from __future__ import annotations

import datetime as dt
import os
import statistics as st
import subprocess
from pathlib import Path
from typing import Any

from benchmarks.serving.loadgen import LITTLE_TOLERANCE, Result

Results = dict[tuple[str, int], list[Result]]


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except OSError:
        return "load average: {:.2f}, {:.2f}, {:.2f}".format(*os.getloadavg())


class Tee:
    """Print and append to the run's results file (none when ``directory`` is empty)."""

    def __init__(self, directory: str, name: str, argv: list[str]):
        self.path: Path | None = None
        self._f = None
        if directory:
            stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d-%H%M")
            self.path = Path(directory) / f"{name}-{stamp}.txt"
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f = open(self.path, "w")  # noqa: SIM115 - closed in close()
        commit = os.environ.get("ABX_GIT_COMMIT") or subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
            cwd=Path(__file__).parent).stdout.strip()
        self.print(f"# python -m benchmarks {name} {' '.join(argv)}".rstrip())
        self.print(f"# {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, commit {commit or '?'}, "
                   f"{os.cpu_count()} cpus")
        self.print(f"# start: {_uptime()}")

    def print(self, text: str) -> None:
        print(text, flush=True)
        if self._f is not None:
            self._f.write(text + "\n")
            self._f.flush()

    def close(self) -> None:
        self.print(f"# end: {_uptime()}")
        if self._f is not None:
            self._f.close()
            print(f"written: {self.path}")


def line(name: str, r: Result, rounds: list[Result] | None = None) -> str:
    """One figure line; with ``rounds`` (a median line) little is the rounds' median and the
    flag counts the rounds that failed the check (medians of different rounds do not obey it)."""
    runs = rounds or [r]
    bad = [x for x in runs if not x.ok]
    flag = "" if not bad else f"   <-- FAILS CHECK ({len(bad)}/{len(runs)})" + (
        f" (non2xx={r.non_2xx} errors={r.errors})" if r.non_2xx or r.errors else "")
    little = float(st.median(x.little for x in runs))
    return (f"  {name:<16} c={r.connections:<3} {r.rps:8.1f} req/s  mean {r.mean_ms:7.2f}  "
            f"p50 {r.p50_ms:7.2f}  p99 {r.p99_ms:7.2f}  p99.9 {r.p999_ms:7.2f}  "
            f"max {r.max_ms:7.1f} ms  little {little:4.2f}  CPU {r.cpu_ms:5.2f} ms/req  "
            f"client {r.client_cpu_ms:4.2f}  n={r.requests}{flag}")


def median(rs: list[Result]) -> Result:
    """Per-field median over rounds (single rounds swing on a shared machine)."""
    def m(f: str) -> float:
        return float(st.median(getattr(r, f) for r in rs))

    return Result(rs[0].connections, m("rps"), m("mean_ms"), m("p50_ms"), m("p99_ms"),
                  m("p999_ms"), max(r.max_ms for r in rs), sum(r.requests for r in rs),
                  sum(r.non_2xx for r in rs), sum(r.errors for r in rs), m("client_cpu_ms"),
                  m("cpu_ms"))


def tables(res: Results, names: list[str], levels: list[int]) -> str:
    lo, hi = LITTLE_TOLERANCE
    out = [f"medians over rounds (little = median over rounds of mean latency x req/s / "
           f"connections; ok in [{lo}, {hi}]):"]
    for level in levels:
        for n in names:
            if (n, level) in res:
                out.append(line(n, median(res[(n, level)]), res[(n, level)]))
    bad = [f"{n}@{c}" for (n, c), rs in res.items() if not all(r.ok for r in rs)]
    verdict = "all runs pass" if not bad else "FAILED in " + ", ".join(bad)
    out.append(f"closed-loop check: {verdict}")
    return "\n".join(out)


def _ratio(res: Results, a: str, b: str, level: int) -> tuple[float, float] | None:
    if (a, level) not in res or (b, level) not in res:
        return None
    ra, rb = median(res[(a, level)]), median(res[(b, level)])
    return ra.rps / max(rb.rps, 1e-9), ra.p99_ms - rb.p99_ms


def goals(res: Results, levels: list[int]) -> str:
    """Issue 15's goals for the router (abx), each marked met or MISSED."""
    want = [("bare", None), ("bare_batch", None), ("abx_plain", None), ("mlflow", 10.0),
            ("mlserver", 1.0), ("bentoml", 1.0), ("ceiling", 1 / 3)]
    out = ["ratios (abx = the router as shipped; throughput x, p99 difference in ms):"]
    for other, target in want:
        for level in levels:
            r = _ratio(res, "abx", other, level)
            if r is None:
                continue
            goal = target
            if other == "bare":
                goal = 1.0 if level == 1 else 2.0
            verdict = ""
            if goal is not None:
                met = r[0] >= goal and (other in ("mlflow", "ceiling") or r[1] <= 0.0)
                p99_part = "" if other in ("mlflow", "ceiling") else " and p99 no worse"
                verdict = f"  goal >= {goal:.2f}x{p99_part}: {'met' if met else 'MISSED'}"
            out.append(f"  abx / {other:<10} c={level:<3} throughput {r[0]:6.2f}x   "
                       f"p99 {r[1]:+8.2f} ms{verdict}")
    return "\n".join(out)


def router_line(name: str, status: dict[str, Any]) -> str:
    """A router's own view after its runs: collections and max pause per generation (gc.freeze's
    effect), and how its batches formed (paths and sizes of the coalesced calls)."""
    if "error" in status:
        return f"  {name}: /admin/status unavailable: {status['error']}"
    gc = status.get("gc") or {}
    mb = status.get("micro_batch") or {}
    w = (mb.get("workers") or {}).get("champion", {})
    sizes = w.get("sizes", {})
    mean = w.get("requests", 0) / max(w.get("calls", 0), 1)
    return (f"  {name:<12} gc: frozen {gc.get('frozen_objects', '?')} objects, collections "
            f"gen0/1/2 {'/'.join(map(str, gc.get('collections', [])))}, max pause "
            f"{'/'.join(f'{m:.1f}' for m in gc.get('max_pause_ms', []))} ms; batching: "
            f"{w.get('calls', 0)} calls, {mean:.1f} requests/call, largest "
            f"{max((int(k) for k in sizes), default=0)}, paths {w.get('paths', {})}")


def gc_compare(res: Results, levels: list[int]) -> str:
    """gc.freeze side by side: the router as shipped vs the same with serving.gc_freeze off."""
    out = ["gc.freeze (abx) vs not (abx_nofreeze), medians over rounds:"]
    for level in levels:
        if ("abx", level) not in res or ("abx_nofreeze", level) not in res:
            continue
        a, b = median(res[("abx", level)]), median(res[("abx_nofreeze", level)])
        out.append(f"  c={level:<3} throughput {a.rps / max(b.rps, 1e-9):5.2f}x   "
                   f"p99 {a.p99_ms:7.1f} vs {b.p99_ms:7.1f} ms   "
                   f"p99.9 {a.p999_ms:7.1f} vs {b.p999_ms:7.1f} ms   "
                   f"max {a.max_ms:7.1f} vs {b.max_ms:7.1f} ms")
    return "\n".join(out)
