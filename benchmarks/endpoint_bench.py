"""An endpoint under steady outside load while an experiment attaches, ramps, promotes, detaches.

``python -m benchmarks endpoint_bench [--phase-s 8] [--replicas 2] [--pg URL]``

Two endpoint replicas (PostgreSQL control store; ``--replicas 1`` for SQLite) serve two real
registered models; a client thread in this process (the endpoint runs in other processes) sends
``/predict`` at a fixed concurrency, round-robin over the replicas, the whole time. Phases:

1. baseline: champion only, ``--phase-s`` seconds;
2. attach: the challenger is loaded at weight 0, then ramped 5 -> 25 -> 50 % (a phase each);
3. promote (the challenger becomes champion in place), then detach (the old model unloaded).

Printed: failed requests (goal 0); for every admin change, the time from its commit to the last
replica applying it (goal <= 1 s); answers from an unloaded variant sent after the unload
returned (goal 0); throughput with the experiment attached (50 % phase) vs the baseline
(goal >= 0.95x). Ratios are within this one run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any


def _cfg(root: Path, store: str | None, replicas: int) -> Any:
    from pipeline_components.config import load_config
    from pipeline_components.serving.testing import (
        TEST_DATA,
        make_test_config,
        register_test_models,
    )

    reg = root / "registry"
    register_test_models(load_config(None, {**TEST_DATA, "experiment.state_dir": str(reg)}))
    over: dict[str, Any] = {"endpoint.port": 0, "endpoint.replicas": replicas,
                            "endpoint.load_timeout_s": 120}
    if store:
        over["serving.store_url"] = store
    return make_test_config(reg, root / "state", over)


def _apply_times(cfg: Any, version: int, t_commit: float) -> float:
    """Seconds from the change's commit to the slowest replica applying it."""
    from pipeline_components.serving import operations as ops

    ops.wait_applied(cfg, version, 30)
    return max(float(r["applied_at"]) for r in ops.live_replicas(cfg)) - t_commit


def _rate(shots: list[Any], t0: float, t1: float) -> float:
    return sum(1 for s in shots if t0 <= s.done < t1 and s.code == 200) / max(t1 - t0, 1e-9)


def _pg_database(url: str) -> str:
    from sqlalchemy import create_engine, text

    name = f"abx_bench_{uuid.uuid4().hex[:10]}"
    eng = create_engine(url.replace("postgresql://", "postgresql+psycopg://"),
                        isolation_level="AUTOCOMMIT")
    with eng.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    return url.rsplit("/", 1)[0] + "/" + name


def run(phase_s: float, replicas: int, pg: str | None, concurrency: int) -> dict[str, Any]:
    from pipeline_components.config import load_config
    from pipeline_components.deploy import LocalBackend
    from pipeline_components.serving import operations as ops
    from pipeline_components.serving.endpoint_testing import Traffic, failed
    from pipeline_components.serving.testing import TEST_DATA, sample_rows

    root = Path(tempfile.mkdtemp(prefix="abx-endpoint-bench-"))
    store = _pg_database(pg) if replicas > 1 else None
    cfg = _cfg(root, store, replicas)
    rows = sample_rows(load_config(None, TEST_DATA), 200)
    backend = LocalBackend()
    ops.ensure_endpoint(cfg, "bench")
    urls = [d.url for d in backend.start_endpoint(cfg)]
    control = ops.open_control(cfg)
    name = cfg.endpoint.name
    applies: list[tuple[str, float]] = []
    traffic = [Traffic(u, rows, concurrency=max(1, concurrency // len(urls))).start()
               for u in urls]
    marks: dict[str, float] = {}

    def change(label: str, fn: Any) -> None:
        t = time.time()
        v = fn()
        applies.append((label, _apply_times(cfg, v, t)))

    try:
        time.sleep(1.0)
        marks["base0"] = time.time()
        time.sleep(phase_s)
        marks["base1"] = time.time()
        control.attach(name, "bench-exp", "bench-salt")
        ops.load(cfg, "challenger", "models:/abx-model/2", "bench-exp")
        for share in (0.05, 0.25, 0.5):
            change(f"weights {share:.0%}", lambda s=share: control.set_weights(
                name, {"champion": 1 - s, "challenger": s}, "bench"))
            marks[f"s{share}"] = time.time()
            time.sleep(phase_s)
        marks["ramp1"] = time.time()
        change("promote", lambda: control.promote(name, "challenger", "bench"))
        change("load old v1", lambda: control.load(name, ops.pin(cfg, "old", "models:/abx-model/1",
                                                                  "bench"), "bench"))
        ops.wait_ready(cfg, "old", "models:/abx-model/1", 0)
        change("weights old 30%", lambda: control.set_weights(name, {"old": 0.3}, "bench"))
        time.sleep(2.0)
        change("unload old", lambda: control.unload(name, "old", "bench"))
        marks["unloaded"] = time.time()
        control.detach(name, "bench-exp")
        time.sleep(2.0)
    finally:
        shots = [s for t in traffic for s in t.stop()]
        backend.stop_endpoint(cfg)
    base = _rate(shots, marks["base0"], marks["base1"])
    attached = _rate(shots, marks["s0.5"], marks["ramp1"])
    return {"replicas": replicas, "requests": len(shots), "failed": len(failed(shots)),
            "applies": applies, "after_unload": sum(1 for s in shots if s.variant == "old"
                                                    and s.sent > marks["unloaded"]),
            "base_rps": base, "attached_rps": attached, "ratio": attached / max(base, 1e-9),
            "store": "postgresql" if store else "sqlite"}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="endpoint_bench")
    p.add_argument("--phase-s", type=float, default=8.0)
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    a = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print(f"uptime: {os.popen('uptime').read().strip()}")
    r = run(a.phase_s, a.replicas, a.pg, a.concurrency)
    print(f"{r['replicas']} replica(s), {r['store']} control store, {r['requests']} requests")
    print(f"failed requests                 {r['failed']}   (goal 0)")
    for label, s in r["applies"]:
        print(f"time to apply on every replica  {s * 1000:7.0f} ms  {label}   (goal <= 1000 ms)")
    print(f"answers from 'old' after unload {r['after_unload']}   (goal 0)")
    print(f"throughput attached (50%) / baseline  {r['attached_rps']:.1f} / {r['base_rps']:.1f} "
          f"req/s = {r['ratio']:.2f}x   (goal >= 0.95x)")
