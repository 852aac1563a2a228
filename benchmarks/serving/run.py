"""Serving benchmark: (a) bare FastAPI, (b) abx router 90/10 with logging, (c) mlflow serve.

All three serve the same registered logistic-regression pipeline with one uvicorn worker and
OMP_NUM_THREADS=1, on loopback, one after another, under the same bounded load (wrk, 1 thread,
``--connections`` keep-alive connections). (a), (b) and (b0: the router without micro-batching)
are measured ``--rounds`` times, interleaved; medians are reported (the machine is shared) with
each server's CPU time per answered request, the figure least moved by other load. Ratios compare
figures from this run only.
Targets (issue 4): b/a throughput >= 0.9, p99(b) - p99(a) <= 2 ms, b/c throughput >= 3.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from benchmarks.serving.loadgen import Result, run

ENV = {"OMP_NUM_THREADS": "1", "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONUNBUFFERED": "1"}


def _wait(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server for {url} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code in (200, 405):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout_s} s")


def _spawn(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **ENV, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    with open(log, "ab") as f:
        return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def cpu_seconds(pid: int) -> float:
    """User+system CPU of a process and its children (robust to other load on a shared box)."""
    import psutil

    proc = psutil.Process(pid)
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def measure(url: str, path: str, pid: int, feats: dict[str, Any] | None, body: str | None,
            a: argparse.Namespace) -> Result:
    """One wrk run; adds the server's CPU ms per answered request to the result."""
    c0 = cpu_seconds(pid)
    r = run(url, path, feats, body, a.duration, a.connections)
    cpu_ms = (cpu_seconds(pid) - c0) * 1000.0 / max(r.requests, 1)
    return replace(r, cpu_ms=cpu_ms)


def _line(name: str, r: Result) -> str:
    return (f"  {name:<34} {r.rps:9.1f} req/s   p50 {r.p50_ms:7.2f} ms   p99 {r.p99_ms:7.2f} ms"
            f"   CPU {r.cpu_ms:5.2f} ms/req   n={r.requests} non2xx={r.non_2xx}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="benchmarks serving", description=__doc__)
    p.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="3 s, 1 round (smoke run)")
    p.add_argument("--skip-mlflow", action="store_true")
    a = p.parse_args(argv)
    if a.quick:
        a.duration, a.rounds = 3, 1
    work = Path(tempfile.mkdtemp(prefix="abx-bench-serving-"))
    try:
        _bench(a, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _bench(a: argparse.Namespace, work: Path) -> None:
    from pipeline_components.config import load_config
    from pipeline_components.deploy import LocalBackend
    from pipeline_components.serving.testing import (
        TEST_DATA,
        make_test_config,
        register_test_models,
        sample_rows,
    )
    from pipeline_components.store import count_rows, make_engine, predictions

    os.environ.update(ENV)
    register_test_models(load_config(None, {**TEST_DATA, "experiment.state_dir": str(work)}))
    cfg = make_test_config(work, work / "router", {
        "serving.weights": {"champion": 0.9, "challenger": 0.1}, "experiment.id": "bench"})
    feats: dict[str, Any] = sample_rows(cfg, 1)[0]
    print(f"model: LR pipeline ({len(feats)} raw features), wrk -t1 -c{a.connections} "
          f"-d{a.duration}s, rounds={a.rounds}, cpus={os.cpu_count()}, "
          f"load avg {os.getloadavg()[0]:.1f}", flush=True)

    from pipeline_components.deploy.local import free_port

    port_a = free_port()
    bare = _spawn([sys.executable, "-m", "benchmarks.serving.bare_app", "--port", str(port_a),
                   "--model-uri", "models:/abx-model/1", "--tracking-uri", cfg.tracking_uri],
                  work / "bare.log")
    backend = LocalBackend()
    dep = backend.start(cfg)
    cfg0 = make_test_config(work, work / "router0", {
        "serving.weights": {"champion": 0.9, "challenger": 0.1}, "experiment.id": "bench0",
        "serving.micro_batch": False})
    dep0 = backend.start(cfg0)
    _wait(f"http://127.0.0.1:{port_a}/readyz", bare)
    urls = {"a": f"http://127.0.0.1:{port_a}", "b": dep.url, "b0": dep0.url}
    pids = {"a": bare.pid, "b": dep.pid, "b0": dep0.pid}
    res: dict[str, list[Result]] = {k: [] for k in urls}
    try:
        for url in urls.values():  # warm-up
            run(url, "/predict", feats, None, 1, a.connections)
        for _ in range(a.rounds):
            for k, url in urls.items():
                res[k].append(measure(url, "/predict", pids[k], feats, None, a))
                print(_line(f"round: {k}", res[k][-1]), flush=True)
    finally:
        _stop(bare)
        backend.stop(dep)
        backend.stop(dep0)
    stored = count_rows(make_engine(cfg.store_url), predictions, "bench")
    sent = sum(r.requests for r in res["b"])
    best = {k: _median(v) for k, v in res.items()}
    rc = None if a.skip_mlflow else _mlflow_serve(cfg, feats, a, work)
    _report(best, rc, stored, sent)


def _mlflow_serve(cfg: Any, feats: dict[str, Any], a: argparse.Namespace, work: Path) -> Result:
    import json

    from pipeline_components.deploy.local import free_port

    port = free_port()
    mlflow_bin = str(Path(sys.executable).parent / "mlflow")
    proc = _spawn([mlflow_bin, "models", "serve", "-m", "models:/abx-model/1", "--env-manager",
                   "local", "--host", "127.0.0.1", "-p", str(port), "-w", "1"],
                  work / "mlflow.log")
    os.environ["MLFLOW_TRACKING_URI"] = cfg.tracking_uri
    body = json.dumps({"dataframe_split": {"columns": list(feats), "data": [list(feats.values())]}})
    try:
        _wait(f"http://127.0.0.1:{port}/ping", proc)
        run(f"http://127.0.0.1:{port}", "/invocations", None, body, 1, a.connections)
        return measure(f"http://127.0.0.1:{port}", "/invocations", proc.pid, None, body, a)
    finally:
        _stop(proc)


def _median(rs: list[Result]) -> Result:
    """Per-field median over rounds (the box is shared: single rounds swing by 2x)."""
    import statistics as st

    return Result(rps=st.median(r.rps for r in rs), p50_ms=st.median(r.p50_ms for r in rs),
                  p99_ms=st.median(r.p99_ms for r in rs), requests=sum(r.requests for r in rs),
                  non_2xx=sum(r.non_2xx for r in rs), tool=rs[0].tool,
                  cpu_ms=st.median(r.cpu_ms for r in rs))


def _report(best: dict[str, Result], rc: Result | None, stored: int, sent: int) -> None:
    ra, rb, rb0 = best["a"], best["b"], best["b0"]
    print("medians over rounds:")
    print(_line("(a) bare FastAPI + numpy", ra))
    print(_line("(b) abx router 90/10, logging on", rb))
    print(_line("(b0) same, micro_batch off", rb0))
    if rc is not None:
        print(_line("(c) mlflow models serve", rc))
    for name, r in (("b", rb), ("b0", rb0)):
        print(f"  {name}/a throughput {r.rps / ra.rps:.2f}x (target >= 0.9)   "
              f"p99({name}) - p99(a) {r.p99_ms - ra.p99_ms:+.2f} ms (target <= 2)")
    print(f"  CPU per request: b/a {rb.cpu_ms / ra.cpu_ms:.2f}x, b0/a {rb0.cpu_ms / ra.cpu_ms:.2f}x"
          + (f", c/b {rc.cpu_ms / rb.cpu_ms:.1f}x" if rc is not None else ""))
    if rc is not None:
        print(f"  b/c throughput {rb.rps / rc.rps:.2f}x (target >= 3)   "
              f"b0/c {rb0.rps / rc.rps:.2f}x   a/c {ra.rps / rc.rps:.2f}x")
    print(f"  router (b) rows stored {stored} for {sent} requests wrk counted "
          f"(plus warm-up and requests cut off at the end of each run)")


if __name__ == "__main__":
    main()
