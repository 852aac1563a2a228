"""The scale-out stack end to end: `make scale-demo` with 2 Celery workers vs 1.

Each round runs ``scripts/scale-demo.sh`` (PostgreSQL, Redis, mlflow server, Airflow api-server,
scheduler, dag-processor, CeleryExecutor workers, the endpoint's replicas as containers; a
bootstrap run then an experiment triggered through the REST API; teardown) once with
``SCALE_WORKERS=2`` and once with ``SCALE_WORKERS=1``, interleaved, each worker with one task slot
(``SCALE_CONCURRENCY=1``, unless set), so the worker count is the number of tasks that can run at
once (the ``abx_training`` pool has 2 slots). From the Airflow API's task
instance timings of the experiment run (``$RUN/timings.json``) it prints

* the experiment run's wall time (run start to end) and its decision;
* the training phase (first ``train`` task start to last end) and **Optuna trials per minute**
  over it (families x trials / phase);
* the whole script's time (stack up, two runs, teardown).

``--as-demo`` instead runs once, 2 workers with 2 slots each, the experiment ``make demo`` runs
(``SCALE_AS_DEMO=1``: 3 families x 5 trials, the default canary ramp), to compare its wall time
with ``make demo`` (benchmarks/results/make-demo-*.txt: one process, ``airflow dags test``,
SQLite, an endpoint already up). Knobs pass through: SCALE_TRIALS, SCALE_FAMILIES.
The machine is shared: the load average is printed per round.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def _ts(s: str) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def summarize(run_dir: Path, families: int, trials: int) -> dict[str, Any]:
    """Figures of one scale-demo run from its timings.json and report."""
    t = json.loads((run_dir / "timings.json").read_text())
    run = t["run"]
    train = [x for x in t["tasks"] if x["task_id"] == "train" and x["start_date"]]
    start = min(_ts(x["start_date"]) for x in train)
    end = max(_ts(x["end_date"]) for x in train)
    pools = sorted({f"{x['task_id']}:{x['pool']}" for x in t["tasks"]
                    if x["pool"] != "default_pool"})
    decision = "?"
    for rep in (run_dir / "state" / "experiments").glob("*/run/decision.json"):
        if not rep.parent.parent.name.startswith("scale-boot"):
            decision = json.loads(rep.read_text()).get("action", "?")
    return {"run_s": _ts(run["end_date"]) - _ts(run["start_date"]), "state": run["state"],
            "train_s": end - start, "trials": families * trials,
            "trials_per_min": families * trials / max(end - start, 1e-9) * 60.0,
            "decision": decision, "pools": pools}


def one_round(workers: int, env: dict[str, str]) -> dict[str, Any]:
    t0 = time.monotonic()
    load = os.getloadavg()[0]
    res = subprocess.run(["bash", "scripts/scale-demo.sh"], cwd=REPO, capture_output=True,
                         text=True, env={**env, "SCALE_WORKERS": str(workers)})
    took = time.monotonic() - t0
    m = re.search(r"logs in (\S+)/logs", res.stdout)
    if res.returncode != 0 or m is None:
        print(res.stdout[-3000:], res.stderr[-2000:])
        raise SystemExit(f"scale-demo with {workers} worker(s) failed (rc {res.returncode})")
    return {"workers": workers, "script_s": took, "load": load, "dir": m.group(1)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="benchmarks scale_out", description=__doc__)
    p.add_argument("--rounds", type=int, default=1, help="rounds of (2 workers, 1 worker)")
    p.add_argument("--as-demo", action="store_true", help="one run of make demo's experiment")
    a = p.parse_args(argv)
    if a.as_demo:
        r = one_round(2, {**os.environ, "SCALE_AS_DEMO": "1"})
        r.update(summarize(Path(r["dir"]), 3, 5))
        print(f"  make demo's experiment on the scale-out stack (2 workers x 2 slots): experiment "
              f"run {r['run_s']:.1f} s ({r['state']}, {r['decision']}), train phase "
              f"{r['train_s']:.1f} s = {r['trials_per_min']:.1f} trials/min ({r['trials']} "
              f"trials), whole script {r['script_s']:.0f} s, load before {r['load']:.1f}")
        return
    env = {"SCALE_CONCURRENCY": "1", **os.environ}
    families = len(json.loads(env.get("SCALE_FAMILIES", '["logreg", "extra_trees"]')))
    trials = int(env.get("SCALE_TRIALS", "3"))
    rows = []
    for _ in range(a.rounds):
        for workers in (2, 1):
            r = one_round(workers, env)
            r.update(summarize(Path(r["dir"]), families, trials))
            rows.append(r)
            print(f"  {workers} worker(s): experiment run {r['run_s']:6.1f} s ({r['state']}, "
                  f"{r['decision']}), train phase {r['train_s']:5.1f} s = "
                  f"{r['trials_per_min']:5.1f} trials/min ({r['trials']} trials), whole script "
                  f"{r['script_s']:5.0f} s, load before {r['load']:.1f}; pools {r['pools']}",
                  flush=True)
    for w in (2, 1):
        mine = [r for r in rows if r["workers"] == w]
        tpm = sorted(r["trials_per_min"] for r in mine)[len(mine) // 2]
        run_s = sorted(r["run_s"] for r in mine)[len(mine) // 2]
        print(f"median, {w} worker(s): {tpm:.1f} trials/min, experiment run {run_s:.1f} s")
    two = [r["trials_per_min"] for r in rows if r["workers"] == 2]
    one = [r["trials_per_min"] for r in rows if r["workers"] == 1]
    ratio = sorted(two)[len(two) // 2] / sorted(one)[len(one) // 2]
    print(f"trials/min 2 workers / 1 worker: {ratio:.2f}x")


if __name__ == "__main__":
    main()
