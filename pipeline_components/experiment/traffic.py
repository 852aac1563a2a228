"""The simulator as an outside client: one ``abx simulate --url`` process per canary step.

With ``canary.traffic: simulator`` the canary does not send requests itself: it starts the
simulator as a separate process against the endpoint's address (exactly what a user would run)
and, at each poll, only asks whether that process is done. The process writes its result file
atomically when it finishes; a process that died without one ended the step's traffic too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from pipeline_components.config import Config

_ENTRY = "from pipeline_components.cli import main; main()"


def spawn(cfg: Config, urls: list[str], offset: int, n: int, look: int) -> dict[str, Any]:
    """Start the step's traffic process (detached: it outlives a rescheduled sensor poke),
    spreading its users over every replica in ``urls``."""
    from pipeline_components.deploy.local import router_params
    from pipeline_components.serving.keys import secret_env

    folder = cfg.experiment_dir / "run" / "traffic"
    folder.mkdir(parents=True, exist_ok=True)
    params = folder / "params.yaml"
    raw = router_params(cfg)  # secrets travel by environment, never in a file
    raw["endpoint"]["client_key"] = None
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    out = folder / f"step-{look}.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-c", _ENTRY, "simulate", "--params", str(params),
           *(a for u in urls for a in ("--url", u)), "--offset", str(offset), "--n", str(n),
           "--out", str(out), "--no-progress"]
    env = {**os.environ, **secret_env(cfg), "PYTHONUNBUFFERED": "1"}
    with open(folder / f"step-{look}.log", "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    return {"pid": proc.pid, "out": str(out), "urls": urls, "offset": offset, "n": n,
            "started_at": time.time()}


def _running(pid: int) -> bool:
    try:  # reap it if it is our child (dag.test and `abx run` keep the parent alive)
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def finished(info: dict[str, Any]) -> dict[str, Any] | None:
    """The traffic process's result once it is done (``{"error": ...}`` if it died), else None."""
    out = Path(info["out"])
    if out.is_file():
        return json.loads(out.read_text())
    if _running(int(info["pid"])):
        return None
    if out.is_file():  # finished between the two checks
        return json.loads(out.read_text())
    log = out.with_suffix(".log")
    tail = log.read_text()[-500:] if log.is_file() else ""
    return {"error": f"traffic process {info['pid']} exited without a result: {tail}"}


def stop(info: dict[str, Any]) -> None:
    """Stop a step's traffic process that is still running (teardown)."""
    import signal

    pid = int(info.get("pid") or 0)
    if pid and _running(pid):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
