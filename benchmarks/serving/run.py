"""Serving benchmark: the abx router against the bare endpoint, mlflow serve, MLServer and BentoML.

Every server runs as its own process (one uvicorn worker, OMP_NUM_THREADS=1, loopback) and serves
the same model abx itself registered in this run: the histogram-GBDT pipeline ``abx train`` picks
and the logistic-regression pipeline, both trained by the project's own train stage on its
synthetic data. Servers, per model:

  ceiling      bare ASGI app answering a constant JSON (what one worker can do at all)
  bare         thinnest FastAPI endpoint: JSON -> numpy row -> sklearn, one call per request
  bare_batch   the same with the simplest opportunistic batching (like-for-like with abx)
  abx_plain    the abx router, serving.micro_batch off (validation, routing, logging, metrics on)
  abx          the abx router as shipped (micro-batching with a latency budget, gc.freeze)
  abx_nofreeze the router as shipped but serving.gc_freeze off (only with --gc or --servers)
  mlflow       `mlflow models serve --env-manager local`
  mlserver     MLServer 1.7 + mlserver-sklearn, adaptive batching (own venv)
  bentoml      BentoML 1.4, batchable API (own venv)

Load: ``loadgen.py``'s closed loop at 1, 8 and 32 connections; rounds interleave servers and
levels so a busy spell on the shared machine hits all alike; medians over rounds. Each level
prints the Little's-law check (mean latency x throughput / connections, ~1.0). Ratios compare
figures of this run only. The output is also written to benchmarks/results/.

``--gc`` measures gc.freeze side by side: abx and abx_nofreeze only, long levels (default 30 s
each at 8 and 32 connections, HGBT), p99/p99.9/max per level and each router's own timing of its
collections (``/admin/status`` ``gc``: count and max pause per generation). Full collections of
an unfrozen heap are rare (a threshold on objects promoted since the last one), so short levels
may see none.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.serving import report
from benchmarks.serving.servers import Server, start_servers, stop_servers

REPO = Path(__file__).resolve().parents[2]
ALL_SERVERS = ["ceiling", "bare", "bare_batch", "abx_plain", "abx", "mlflow", "mlserver", "bentoml"]
EXTRA_SERVERS = ["abx_nofreeze"]  # run only when named (--servers) or with --gc
ENV = {"OMP_NUM_THREADS": "1", "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONUNBUFFERED": "1"}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="benchmarks serving", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=None,
                   help="seconds measured per level (default 4; 30 with --gc)")
    p.add_argument("--warmup", type=float, default=0.5, help="seconds of load before measuring")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--levels", default=None,
                   help="connections, comma-separated (default 1,8,32; 8,32 with --gc)")
    p.add_argument("--models", default=None, help="default hgbt,lr; hgbt with --gc")
    p.add_argument("--servers", default=None,
                   help=f"default {','.join(ALL_SERVERS)}; also: {','.join(EXTRA_SERVERS)}")
    p.add_argument("--gc", action="store_true",
                   help="gc.freeze side by side: abx vs abx_nofreeze, long levels")
    p.add_argument("--trials", type=int, default=4, help="Optuna trials per family when training")
    p.add_argument("--peers-dir", default=str(REPO.parent / "peers"),
                   help="where the peers' virtual environments live (created if missing)")
    p.add_argument("--results", default=str(REPO / "benchmarks" / "results"),
                   help="directory for the run's output file ('' to skip)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1.5 s, 1 round")
    p.add_argument("--keep", action="store_true", help="keep the work directory (server logs)")
    a = p.parse_args(argv)
    gc_mode = {"duration": 30.0, "levels": "8,32", "models": "hgbt", "servers": "abx,abx_nofreeze"}
    plain = {"duration": 4.0, "levels": "1,8,32", "models": "hgbt,lr",
             "servers": ",".join(ALL_SERVERS)}
    for k, v in (gc_mode if a.gc else plain).items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    if a.quick:
        a.duration, a.rounds, a.warmup = 1.5, 1, 0.3
    a.levels = [int(x) for x in a.levels.split(",")]
    a.models = a.models.split(",")
    wanted = a.servers.split(",")
    unknown = sorted(set(wanted) - set(ALL_SERVERS) - set(EXTRA_SERVERS))
    if unknown:
        p.error(f"--servers: unknown {unknown} (known: {ALL_SERVERS + EXTRA_SERVERS})")
    a.servers = [s for s in ALL_SERVERS + EXTRA_SERVERS if s in wanted]
    return a


def main(argv: list[str] | None = None) -> None:
    a = parse(argv)
    work = Path(tempfile.mkdtemp(prefix="abx-bench-serving-"))
    out = report.Tee(a.results, "serving", argv if argv is not None else sys.argv[1:])
    try:
        os.environ.update(ENV)
        models = register_models(work, a.trials)
        planned = len(a.models) * len(a.servers) * len(a.levels) * a.rounds
        out.print(f"plan: {planned} measurements x {a.warmup + a.duration:.1f} s "
                  f"(+ server start-up), rounds={a.rounds}, levels={a.levels}")
        for key in a.models:
            _bench_model(a, work, key, models[key], out)
    finally:
        out.close()
        if a.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def register_models(work: Path, trials: int) -> dict[str, dict[str, Any]]:
    """Run the project's data, features, train and register stages; returns model -> info."""
    from pipeline_components import data, features, registry, validate
    from pipeline_components.config import load_config
    from pipeline_components.training.runner import train_family

    base = {"data.raw_path": str(work / "raw.parquet"), "features.out_dir": str(work / "features"),
            "validation.report_path": str(work / "validation.json"),
            "experiment.state_dir": str(work / "state"), "training.workers": 1,
            "training.n_trials": trials}
    cfg = load_config(REPO / "params.yaml", base)
    data.run_data(cfg)
    validate.run_validate(cfg)
    features.run_features(cfg)
    out: dict[str, dict[str, Any]] = {}
    for key, family in (("hgbt", "hist_gbdt"), ("lr", "logreg")):
        c = load_config(REPO / "params.yaml", {**base, "experiment.id": f"bench-{key}",
                                               "training.families": [family]})
        t0 = time.perf_counter()
        res = registry.register_best(c, [train_family(c, family)])
        out[key] = {"cfg": c, "uri": res["model_uri"], "family": family,
                    "train_s": time.perf_counter() - t0}
        print(f"registered {family} as {res['model_uri']} "
              f"({out[key]['train_s']:.0f} s train+register)", flush=True)
    return out


def _bench_model(a: argparse.Namespace, work: Path, key: str, info: dict[str, Any],
                 out: report.Tee) -> None:
    from benchmarks.serving.calls import call_costs
    from benchmarks.serving.loadgen import Result
    from pipeline_components.serving.testing import sample_rows

    out.print(f"\n## model {key}: {info['family']} pipeline, {info['uri']}")
    for text in call_costs(info["uri"], sample_rows(info["cfg"], 32)):
        out.print(text)
    servers: list[Server] = start_servers(a, work / key, info, out)
    res: dict[tuple[str, int], list[Result]] = {}
    try:
        for r in range(a.rounds):
            for level in a.levels:
                for s in servers:
                    m = s.measure(level, a.duration, a.warmup)
                    res.setdefault((s.name, level), []).append(m)
                    out.print(report.line(f"r{r} {s.name}", m))
        for s in servers:
            if s.name.startswith("abx"):
                out.print(report.router_line(s.name, router_status(s)))
    finally:
        stop_servers(servers)
    out.print(report.tables(res, [s.name for s in servers], a.levels))
    if "abx_nofreeze" in a.servers:
        out.print(report.gc_compare(res, a.levels))
    if not a.gc:
        out.print(report.goals(res, a.levels))


def router_status(s: Server) -> dict[str, Any]:
    """The router's /admin/status after its measurements (gc pauses, batching paths)."""
    import httpx

    try:
        r = httpx.get(f"{s.url}/admin/status", headers={"Authorization": "Bearer bench"},
                      timeout=10.0)
        return dict(r.json())
    except (httpx.HTTPError, ValueError) as exc:
        return {"error": str(exc)}


def spawn(cmd: list[str], log: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> subprocess.Popen[bytes]:
    full = {**os.environ, **ENV, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            **(env or {})}
    with open(log, "ab") as f:
        return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=full, cwd=cwd,
                                start_new_session=True)


if __name__ == "__main__":
    main()
