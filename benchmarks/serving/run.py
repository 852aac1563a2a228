"""Serving benchmark: the abx router against the bare endpoint, mlflow serve, MLServer and BentoML.

Every server runs as its own process (one uvicorn worker, OMP_NUM_THREADS=1, loopback) and serves
the same model abx itself registered in this run: the histogram-GBDT pipeline ``abx train`` picks
and the logistic-regression pipeline, both trained by the project's own train stage on its
synthetic data. Servers, per model:

  ceiling      bare ASGI app answering a constant JSON (what one worker can do at all)
  bare         thinnest FastAPI endpoint: JSON -> numpy row -> sklearn, one call per request
  bare_batch   the same with the simplest opportunistic batching (like-for-like with abx)
  abx_plain    the abx router, serving.micro_batch off (validation, routing, logging, metrics on)
  abx          the abx router as shipped (micro-batching)
  mlflow       `mlflow models serve --env-manager local`
  mlserver     MLServer 1.7 + mlserver-sklearn, adaptive batching (own venv)
  bentoml      BentoML 1.4, batchable API (own venv)

Load: ``loadgen.py``'s closed loop at 1, 8 and 32 connections; rounds interleave servers and
levels so a busy spell on the shared machine hits all alike; medians over rounds. Each level
prints the Little's-law check (mean latency x throughput / connections, ~1.0). Ratios compare
figures of this run only. The output is also written to benchmarks/results/.
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
ENV = {"OMP_NUM_THREADS": "1", "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONUNBUFFERED": "1"}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="benchmarks serving", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=4.0, help="seconds measured per level")
    p.add_argument("--warmup", type=float, default=0.5, help="seconds of load before measuring")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--levels", default="1,8,32", help="connections, comma-separated")
    p.add_argument("--models", default="hgbt,lr")
    p.add_argument("--servers", default=",".join(ALL_SERVERS))
    p.add_argument("--trials", type=int, default=4, help="Optuna trials per family when training")
    p.add_argument("--peers-dir", default=str(REPO.parent / "peers"),
                   help="where the peers' virtual environments live (created if missing)")
    p.add_argument("--results", default=str(REPO / "benchmarks" / "results"),
                   help="directory for the run's output file ('' to skip)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1.5 s, 1 round")
    p.add_argument("--keep", action="store_true", help="keep the work directory (server logs)")
    a = p.parse_args(argv)
    if a.quick:
        a.duration, a.rounds, a.warmup = 1.5, 1, 0.3
    a.levels = [int(x) for x in a.levels.split(",")]
    a.models = a.models.split(",")
    a.servers = [s for s in ALL_SERVERS if s in a.servers.split(",")]
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
    finally:
        stop_servers(servers)
    out.print(report.tables(res, [s.name for s in servers], a.levels))
    out.print(report.goals(res, a.levels))


def spawn(cmd: list[str], log: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> subprocess.Popen[bytes]:
    full = {**os.environ, **ENV, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            **(env or {})}
    with open(log, "ab") as f:
        return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=full, cwd=cwd,
                                start_new_session=True)


if __name__ == "__main__":
    main()
