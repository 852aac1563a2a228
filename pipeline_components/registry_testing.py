"""Test helpers for registry faults: a real ``mlflow server``, a fault proxy, a crash hook.

Used by ``tests/experiment/test_champion_safety.py`` and the reliability benchmark; nothing in
the pipeline imports this module.

* ``MlflowServer``: a real ``mlflow server`` process on a free loopback port (start, stop,
  restart on the same store).
* ``FaultProxy``: a small real HTTP proxy process in front of it. ``set(mode, after=..., only=...)``
  makes it answer 503, hang (a timeout for the client) or drop the connection, from the next
  request on or only after a request whose path contains ``after`` went through (mid-operation).
* ``python -m pipeline_components.registry_testing promote --params P --set K=V ...``: runs
  ``promotion.promote`` in its own process. With ``ABX_TEST_CRASH_AT=alias:<name>`` it SIGKILLs
  itself just before the client would move that alias (the tags are written by then): a crash
  between tag and alias, with no hook in any production path. ``ABX_TEST_GO_FILE=<path>``: the
  process writes ``<path>.ready.<pid>`` once imported and starts when ``<path>`` exists, so
  concurrent promoters start at the same instant.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

CONTROL = "/__abx_fault__"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {proc.returncode}; see {log}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout_s:.0f} s; see {log}")


def _stop(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, sig)  # our own process group (start_new_session): the server's workers
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(15)


class MlflowServer:
    """A real ``mlflow server`` on ``sqlite:///<root>/mlflow.db`` (copy ``template`` first: a
    migrated store starts in seconds instead of tens)."""

    def __init__(self, root: Path, template: Path | None = None) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        root.mkdir(parents=True, exist_ok=True)
        if template is not None and not (root / "mlflow.db").exists():
            (root / "mlflow.db").write_bytes(template.read_bytes())

    def start(self, timeout_s: float = 180) -> MlflowServer:
        cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
               f"sqlite:///{self.root / 'mlflow.db'}", "--no-serve-artifacts",
               "--default-artifact-root", str(self.root / "artifacts"), "--host", "127.0.0.1",
               "--port", str(self.port), "--workers", "1"]
        log = self.root / "server.log"
        env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true",
               "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job runner process
        with open(log, "ab") as fh:
            self.proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        _wait_http(self.url + "/health", self.proc, timeout_s, log)
        return self

    def stop(self) -> None:
        _stop(self.proc)


class FaultProxy:
    """A real HTTP proxy process in front of ``upstream`` whose failures a test switches on."""

    def __init__(self, upstream: str, root: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        log = root / f"proxy-{self.port}.log"
        with open(log, "ab") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pipeline_components.registry_testing", "proxy",
                 str(self.port), upstream], stdout=fh, stderr=subprocess.STDOUT,
                start_new_session=True)
        _wait_http(self.url + CONTROL, self.proc, 60, log)

    def set(self, mode: str, *, after: str | None = None, only: str | None = None) -> None:
        """``mode``: pass | 503 | hang | close. ``after``: only once a request whose path contains
        it was forwarded. ``only``: just requests whose path contains it."""
        httpx.post(self.url + CONTROL, json={"mode": mode, "after": after, "only": only},
                   timeout=5).raise_for_status()

    def stats(self) -> dict[str, Any]:
        return dict(httpx.get(self.url + CONTROL, timeout=5).json())

    def stop(self) -> None:
        _stop(self.proc)


def promoter(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start ``python -m pipeline_components.registry_testing promote ARGS`` (a process)."""
    return subprocess.Popen([sys.executable, "-m", "pipeline_components.registry_testing",
                             "promote", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **(env or {})})


def champion_after_outage(root: Path, params: Path | str = "params.yaml",
                          after: str = "model-versions/set-tag",
                          template: Path | None = None) -> dict[str, Any]:
    """Inject a registry outage mid-promotion and report where the champion alias is.

    A real ``mlflow server`` and a fault proxy under ``root``; registered model with champion v1
    and a challenger v2 that passed its gate and has a promote decision. The proxy answers 503 to
    everything once a request whose path contains ``after`` went through (default: the first tag
    of the promotion), with the registry settings of ``params`` (retries, backoff, timeout).
    ``template``: a migrated ``mlflow.db`` to start from (saves the server's migration).

    Returns:
        ``{"champion_before", "champion_after_outage", "unchanged", "error",
        "seconds_to_error", "champion_after_recovery"}``; ``unchanged`` is the goal (True).
    """
    from pipeline_components.config import load_config
    from pipeline_components.experiment.promotion import promote
    from pipeline_components.experiment.state import write_state

    server = MlflowServer(root / "mlflow", template=template).start()
    proxy: FaultProxy | None = None
    try:
        proxy = FaultProxy(server.url, root)
        cfg = load_config(params, {"experiment.state_dir": str(root / "state"),
                                   "experiment.id": "outage", "tracking.tracking_uri": proxy.url,
                                   "registry.model_name": "abx-outage"})
        direct = _seed_for_promotion(server.url, cfg.registry.model_name)
        write_state(cfg, "decision", {"action": "promote", "reasons": ["benchmark"]})
        proxy.set("503", after=after)
        t0, error = time.perf_counter(), None
        try:
            promote(cfg)
        except Exception as exc:  # the figure: which error, how fast
            error = f"{type(exc).__name__}: {exc}"
        took = time.perf_counter() - t0
        during = direct.get_registered_model(cfg.registry.model_name).aliases.get("champion")
        proxy.set("pass")
        promote(cfg)
        recovered = direct.get_registered_model(cfg.registry.model_name).aliases.get("champion")
    finally:
        if proxy is not None:
            proxy.stop()
        server.stop()
    return {"champion_before": "1", "champion_after_outage": str(during),
            "unchanged": str(during) == "1", "error": error, "seconds_to_error": round(took, 2),
            "champion_after_recovery": str(recovered)}


def _seed_for_promotion(url: str, name: str) -> Any:
    """v1 champion; v2 of experiment ``outage`` gated (passed) against it. Never loaded, so the
    source is a non-local URI (the server refuses local paths without a run)."""
    from mlflow import MlflowClient

    direct = MlflowClient(url, registry_uri=url)
    direct.create_registered_model(name)
    for eid in ("bootstrap", "outage"):
        direct.create_model_version(name, source="s3://abx-never-read/model", tags={
            "experiment_id": eid, "gate_passed": "true", "gate_champion_version": "1"})
    direct.set_registered_model_alias(name, "champion", "1")
    return direct


def _install_crash_hook(alias: str) -> None:
    """Die (SIGKILL, no cleanup) right before the client would move ``alias``."""
    from mlflow import MlflowClient

    original = MlflowClient.set_registered_model_alias

    def hooked(self: MlflowClient, name: str, which: str, version: str) -> None:
        if which == alias:
            os.kill(os.getpid(), signal.SIGKILL)
        original(self, name, which, version)

    MlflowClient.set_registered_model_alias = hooked  # type: ignore[method-assign,assignment]


def _promote_main(argv: list[str]) -> int:
    from pipeline_components.config import load_config, parse_overrides
    from pipeline_components.errors import AbxError
    from pipeline_components.experiment.promotion import promote

    params, sets = argv[argv.index("--params") + 1], []
    for i, arg in enumerate(argv):
        if arg == "--set":
            sets.append(argv[i + 1])
    cfg = load_config(params, parse_overrides(sets))
    crash = os.environ.get("ABX_TEST_CRASH_AT", "")
    if crash.startswith("alias:"):
        _install_crash_hook(crash.split(":", 1)[1])
    go = os.environ.get("ABX_TEST_GO_FILE")
    if go:
        Path(f"{go}.ready.{os.getpid()}").touch()
        deadline = time.monotonic() + 120
        while not Path(go).exists() and time.monotonic() < deadline:
            time.sleep(0.005)
    try:
        print(json.dumps(promote(cfg).to_dict()))
    except AbxError as exc:
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
        return exc.exit_code
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "proxy":
        from pipeline_components.fault_proxy import serve

        serve(int(sys.argv[2]), sys.argv[3])
    elif sys.argv[1] == "promote":
        sys.exit(_promote_main(sys.argv[2:]))
