"""The champion alias after a registry outage injected mid-promotion (goal: unchanged).

A real ``mlflow server`` and a fault proxy in front of it (``registry_testing``): champion v1,
a challenger v2 with a passed gate and a promote decision; the proxy answers 503 to
everything once the promotion's first tag went through. Prints the champion before / during /
after recovery, the error and how long it took to fail, with the registry settings of params.yaml
(``registry.retry_attempts``, ``retry_wait_s``, ``request_timeout_s``). Writes
``benchmarks/results/champion_outage-<UTC date>.txt``.

The reliability benchmark calls ``registry_testing.champion_after_outage(root)`` for the same
figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from pipeline_components.registry_testing import MlflowServer, champion_after_outage

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    """Entry point (``python -m benchmarks champion_outage [--rounds N]``)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="independent outage injections")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args(argv)
    lines = [f"# python -m benchmarks champion_outage --rounds {args.rounds}",
             f"# {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; uptime: "
             + subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()]
    results = []
    with tempfile.TemporaryDirectory(prefix="abx-outage-tpl-") as tpl:
        MlflowServer(Path(tpl)).start().stop()  # migrate one store; every round copies it
        template = Path(tpl) / "mlflow.db"
        for rnd in range(args.rounds):
            with tempfile.TemporaryDirectory(prefix="abx-outage-") as tmp:
                res = champion_after_outage(Path(tmp), REPO / "params.yaml", template=template)
            results.append(res)
            lines.append(f"round {rnd}: champion v{res['champion_before']} -> during outage "
                         f"v{res['champion_after_outage']} (unchanged={res['unchanged']}); "
                         f"failed in {res['seconds_to_error']:.2f} s with "
                         f"{str(res['error'])[:200]}; after recovery "
                         f"v{res['champion_after_recovery']}")
            print(lines[-1], flush=True)
    ok = all(r["unchanged"] for r in results)
    lines.append(f"champion unchanged after the outage in {sum(r['unchanged'] for r in results)}"
                 f"/{len(results)} rounds (goal: all) -> {'met' if ok else 'MISSED'}; load "
                 f"average at the end {os.getloadavg()[0]:.2f}")
    lines.append("json: " + json.dumps(results))
    print(lines[-2])
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"champion_outage-{time.strftime('%Y-%m-%d', time.gmtime())}.txt"
    path.write_text("\n".join(lines) + "\n")
    print(f"written: {path}")
