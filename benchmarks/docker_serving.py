"""Docker backend benchmark: a container replica vs the same router as a local process, and
2 container replicas vs 1, behind the same client; plus the image's size and rebuild time.

Same registered LR pipeline, same params (90/10, logging on), `abx serve` with one uvicorn worker
everywhere; (L) LocalBackend, (D1) DockerBackend 1 replica, (D2) DockerBackend 2 replicas. The
client is always two closed-loop clients (benchmarks/serving/loadgen.py) with half the connections
each (D2: one per replica), so the client work is the same in every case. The client shares the
2 cores, so **server CPU per answered request** (psutil over each server's process tree;
containers are host processes) is the figure that shows whether replicas scale. Rounds are
interleaved; medians are printed; ratios are from this run only.
Target (issue 12): D1/L throughput >= 0.95.

Needs the private engine (scripts/dockerd.sh) and builds the image if the checkout changed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics as st
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.serving.loadgen import run


@dataclass
class Round:
    rps: float
    p99_ms: float
    cpu_ms: float
    requests: int
    non_2xx: int


def _pids(backend: Any, dep: Any) -> list[int]:
    if dep.backend == "local":
        return [dep.pid]
    return [int(backend.client.containers.get(r["container"]).attrs["State"]["Pid"])
            for r in dep.replicas]


def _cpu(pids: list[int]) -> float:
    import psutil

    total = 0.0
    for pid in pids:
        proc = psutil.Process(pid)
        for p in [proc, *proc.children(recursive=True)]:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
    return total


def _bodies(feats: dict[str, Any]) -> Any:
    return lambda i: json.dumps({"unit_id": f"u{i}", "features": feats}).encode()


def measure(urls: list[str], pids: list[int], feats: dict[str, Any], a: Any) -> Round:
    """Two closed-loop clients (half the connections each, one thread each) over ``urls``."""
    c0 = _cpu(pids)
    with ThreadPoolExecutor(2) as ex:
        rs = list(ex.map(lambda u: run(u, "/predict", _bodies(feats),
                                       max(1, a.connections // 2), a.duration),
                         [urls[i % len(urls)] for i in range(2)]))
    n = sum(r.requests for r in rs)
    return Round(rps=sum(r.rps for r in rs), p99_ms=max(r.p99_ms for r in rs),
                 cpu_ms=(_cpu(pids) - c0) * 1000.0 / max(n, 1), requests=n,
                 non_2xx=sum(r.non_2xx + r.errors for r in rs))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="benchmarks docker_serving", description=__doc__)
    p.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="3 s, 1 round (smoke run)")
    a = p.parse_args(argv)
    if a.quick:
        a.duration, a.rounds = 3, 1
    work = Path(tempfile.mkdtemp(prefix="abx-bench-docker-"))
    try:
        _bench(a, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _image() -> str:
    from pipeline_components.deploy.image import build_image

    t0 = time.monotonic()
    res = build_image(log=lambda m: None)
    took = time.monotonic() - t0
    print(f"image {res.tag}: {res.size_bytes / 1e6:.0f} MB; build now {took:.1f} s "
          f"({len(res.rebuilt)} of {res.steps} steps rebuilt: "
          f"{'; '.join(s.split(' : ', 1)[1][:40] for s in res.rebuilt) or 'none'})", flush=True)
    return res.tag


def _bench(a: argparse.Namespace, work: Path) -> None:
    from pipeline_components.config import load_config
    from pipeline_components.deploy import LocalBackend
    from pipeline_components.deploy.docker import DockerBackend
    from pipeline_components.serving.testing import (
        TEST_DATA,
        TEST_TOKEN,
        make_test_config,
        register_test_models,
        sample_rows,
    )

    os.environ.update({"OMP_NUM_THREADS": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
                       "ABX_ADMIN_TOKEN": TEST_TOKEN})
    image = _image()
    register_test_models(load_config(None, {**TEST_DATA, "experiment.state_dir": str(work)}))
    ncpu = os.cpu_count() or 2

    def cfg(exp: str, replicas: int) -> Any:
        return make_test_config(work, work / exp, {
            "serving.weights": {"champion": 0.9, "challenger": 0.1}, "experiment.id": exp,
            "serving.docker.image": image, "serving.docker.replicas": replicas,
            "serving.docker.cpus": float(ncpu), "serving.docker.memory": "1g"})

    feats: dict[str, Any] = sample_rows(cfg("x", 1), 1)[0]
    print(f"2 closed-loop clients x {a.connections // 2} connections, {a.duration} s, "
          f"rounds={a.rounds}, cpus={ncpu}, "
          f"load avg {os.getloadavg()[0]:.1f}", flush=True)
    local, dock = LocalBackend(), DockerBackend()
    deps = {"L": (local, local.start(cfg("bL", 1))), "D1": (dock, dock.start(cfg("bD1", 1))),
            "D2": (dock, dock.start(cfg("bD2", 2)))}
    res: dict[str, list[Round]] = {k: [] for k in deps}
    try:
        for _, dep in deps.values():  # warm-up
            for url in dep.urls:
                run(url, "/predict", _bodies(feats), 2, 1.0)
        for _ in range(a.rounds):
            for k, (backend, dep) in deps.items():
                res[k].append(measure(dep.urls, _pids(backend, dep), feats, a))
                r = res[k][-1]
                print(f"  round {k:<3} {r.rps:8.1f} req/s  p99 {r.p99_ms:7.1f} ms  "
                      f"CPU {r.cpu_ms:5.2f} ms/req  n={r.requests} non2xx={r.non_2xx}", flush=True)
    finally:
        for backend, dep in deps.values():
            backend.stop(dep)
    _report(res)


def _report(res: dict[str, list[Round]]) -> None:
    med = {k: Round(st.median(r.rps for r in v), st.median(r.p99_ms for r in v),
                    st.median(r.cpu_ms for r in v), sum(r.requests for r in v),
                    sum(r.non_2xx for r in v)) for k, v in res.items()}
    names = {"L": "(L) local process", "D1": "(D1) 1 container replica",
             "D2": "(D2) 2 container replicas"}
    print("medians over rounds:")
    for k, r in med.items():
        print(f"  {names[k]:<28} {r.rps:8.1f} req/s  p99 {r.p99_ms:7.1f} ms  "
              f"CPU {r.cpu_ms:5.2f} ms/req  non2xx={r.non_2xx}")
    d1, loc, d2 = med["D1"], med["L"], med["D2"]
    verdict = "met" if d1.rps / loc.rps >= 0.95 else "MISSED"
    print(f"  D1/L throughput {d1.rps / loc.rps:.2f}x (target >= 0.95: {verdict}); "
          f"CPU per request D1/L {d1.cpu_ms / loc.cpu_ms:.2f}x")
    print(f"  D2/D1 throughput {d2.rps / d1.rps:.2f}x; CPU per request D2/D1 "
          f"{d2.cpu_ms / d1.cpu_ms:.2f}x (1.0x = replicas add no per-request cost)")


if __name__ == "__main__":
    main()
