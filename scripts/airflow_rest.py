"""Trigger a DAG run through Airflow's REST API the way the UI does, and wait for it.

Usage: python scripts/airflow_rest.py API_URL PASSWORDS_FILE DAG_ID CONF_JSON [TIMEOUT_S] [OUT_JSON]
Prints the run's id and final state; exit 0 on success, 1 on a failed run, 2 on a timeout. With
OUT_JSON, writes the run (state, start/end) and every task instance's timing there.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import httpx


def token(api: str, passwords: Path, timeout_s: float = 300.0) -> str:
    """A JWT for the admin user once the API server answers (it can take a minute here)."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            if passwords.is_file():
                pw = json.loads(passwords.read_text())["admin"]
                r = httpx.post(f"{api}/auth/token", json={"username": "admin", "password": pw},
                               timeout=10)
                if r.status_code in (200, 201):
                    return str(r.json()["access_token"])
                last = f"HTTP {r.status_code}: {r.text[:200]}"
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            last = str(exc)
        time.sleep(2)
    raise SystemExit(f"airflow API at {api} gave no token after {timeout_s:.0f} s: {last}")


def save_timings(c: httpx.Client, dag_id: str, run_id: str, out: Path) -> None:
    """The run's and each task instance's state, start, end and duration, as the API reports."""
    run = c.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").json()
    tis = c.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances",
                params={"limit": 1000}).json()["task_instances"]
    keep = ("task_id", "map_index", "state", "start_date", "end_date", "duration", "hostname",
            "pool", "try_number")
    out.write_text(json.dumps({"run": {k: run.get(k) for k in ("dag_run_id", "state",
                                                                "start_date", "end_date")},
                               "tasks": [{k: t.get(k) for k in keep} for t in tis]}, indent=2))


def main() -> int:
    api, passwords, dag_id, conf = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4]
    timeout_s = float(sys.argv[5]) if len(sys.argv) > 5 else 1800.0
    h = {"Authorization": f"Bearer {token(api, passwords)}"}
    with httpx.Client(base_url=api, headers=h, timeout=60) as c:
        deadline = time.monotonic() + 300
        while c.get(f"/api/v2/dags/{dag_id}").status_code != 200:  # the dag processor parses it
            if time.monotonic() > deadline:
                raise SystemExit(f"DAG {dag_id} did not appear in the API within 300 s")
            time.sleep(2)
        c.patch(f"/api/v2/dags/{dag_id}", json={"is_paused": False}).raise_for_status()
        r = c.post(f"/api/v2/dags/{dag_id}/dagRuns",
                   json={"logical_date": None, "conf": json.loads(conf)})
        if r.status_code >= 400:
            raise SystemExit(f"trigger refused: HTTP {r.status_code}: {r.text}")
        run_id = r.json()["dag_run_id"]
        print(f"scale-demo: triggered {dag_id} run {run_id}", flush=True)
        deadline, state, seen = time.monotonic() + timeout_s, "queued", ""
        while time.monotonic() < deadline:
            try:  # a busy API server may time out a poll: that is no reason to give up the run
                state = c.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").json()["state"]
                tis = c.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances").json()
            except httpx.HTTPError as exc:
                print(f"  (poll failed, retrying: {exc!r})", flush=True)
                time.sleep(5)
                continue
            done = sorted(f"{t['task_id']}={t['state']}" for t in tis["task_instances"]
                          if t["state"] in ("success", "failed", "skipped", "upstream_failed"))
            line = ", ".join(done)
            if line != seen:
                print(f"  [{state}] {line}", flush=True)
                seen = line
            if state in ("success", "failed"):
                break
            time.sleep(3)
        if len(sys.argv) > 6:
            save_timings(c, dag_id, run_id, Path(sys.argv[6]))
    print(f"scale-demo: run {run_id} finished: state={state}", flush=True)
    return 0 if state == "success" else (1 if state == "failed" else 2)


if __name__ == "__main__":
    sys.exit(main())
