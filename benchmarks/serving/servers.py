"""Start, measure and stop the servers of the serving benchmark (one process tree each)."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import orjson

from benchmarks.serving import loadgen, peers


@dataclass
class Server:
    """One running server: where to send what, and how to stop it."""

    name: str
    url: str
    path: str
    body: Callable[[int], bytes]
    proc: subprocess.Popen[bytes] | None = None
    stop_fn: Callable[[], None] | None = None
    pid: int = 0

    def measure(self, connections: int, duration_s: float, warmup_s: float) -> loadgen.Result:
        """One closed-loop run; adds the server tree's CPU ms per answered request."""
        c0 = cpu_seconds(self.pid)
        t0 = time.perf_counter()
        r = loadgen.run(self.url, self.path, self.body, connections, duration_s, warmup_s)
        share = duration_s / max(time.perf_counter() - t0, 1e-9)  # CPU of the measured window
        cpu = (cpu_seconds(self.pid) - c0) * share
        return replace(r, cpu_ms=cpu * 1000.0 / max(r.requests, 1))


def cpu_seconds(pid: int) -> float:
    """User+system CPU of a process and its children (robust to other load on a shared box)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.NoSuchProcess:
            pass
    return total


def free_port() -> int:
    from pipeline_components.deploy.local import free_port as fp

    return fp()


def _wait(url: str, proc: subprocess.Popen[bytes] | None, log: Path, timeout_s: float = 300.0
          ) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"server for {url} exited with {proc.returncode}:\n{tail}")
        try:
            r = httpx.get(url, timeout=2.0)
            if r.status_code == 200:
                return
            if r.status_code == 503 and b'"error":"' in r.content:  # the router's load error
                raise RuntimeError(f"{url}: {r.text[:500]}")
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} not ready after {timeout_s} s (log: {log})")


def _stop_proc(proc: subprocess.Popen[bytes]) -> None:
    # Each server runs in its own session: signal its group (BentoML/MLServer fork workers).
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def stop_servers(servers: list[Server]) -> None:
    for s in servers:
        if s.stop_fn is not None:
            s.stop_fn()
        elif s.proc is not None:
            _stop_proc(s.proc)


def _bodies(feats: list[dict[str, Any]]) -> dict[str, Callable[[int], bytes]]:
    n = len(feats)
    cols = list(feats[0])
    return {
        "abx": lambda i: orjson.dumps({"unit_id": f"u{i}", "features": feats[i % n]}),
        "mlflow": lambda i: orjson.dumps({"dataframe_split": {
            "columns": cols, "data": [[feats[i % n][c] for c in cols]]}}),
        "mlserver": lambda i: orjson.dumps(peers.mlserver_body(feats[i % n])),
        "bentoml": lambda i: orjson.dumps(peers.bentoml_body(feats[i % n])),
    }


def start_servers(a: argparse.Namespace, work: Path, info: dict[str, Any], out: Any
                  ) -> list[Server]:
    """Start every requested server for one model (in parallel) and wait until all are ready."""
    from benchmarks.serving.run import spawn
    from pipeline_components.serving.testing import sample_rows

    work.mkdir(parents=True, exist_ok=True)
    cfg, uri = info["cfg"], info["uri"]
    bodies = _bodies(sample_rows(cfg, 64))
    py = sys.executable
    started: list[tuple[Server, str, Path]] = []

    def add(name: str, cmd: list[str], port: int, path: str, body: str, ready: str,
            env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        log = work / f"{name}.log"
        proc = spawn(cmd, log, env, cwd)
        s = Server(name, f"http://127.0.0.1:{port}", path, bodies[body], proc, pid=proc.pid)
        started.append((s, ready, log))

    bare = [py, "-m", "benchmarks.serving.bare_app", "--model-uri", uri,
            "--tracking-uri", cfg.tracking_uri]
    for name in a.servers:
        port = free_port()
        if name == "ceiling":
            add(name, [py, "-m", "benchmarks.serving.bare_app", "--ceiling", "--port", str(port)],
                port, "/predict", "abx", "/predict")
        elif name in ("bare", "bare_batch"):
            extra = ["--batch"] if name == "bare_batch" else []
            add(name, [*bare, "--port", str(port), *extra], port, "/predict", "abx", "/readyz")
        elif name in ("abx", "abx_plain", "abx_nofreeze"):
            cmd = _abx_cmd(cfg, uri, work / name, port, micro_batch=name != "abx_plain",
                           gc_freeze=name != "abx_nofreeze")
            add(name, cmd, port, "/predict", "abx", "/readyz")
        elif name == "mlflow":
            add(name, [str(Path(py).parent / "mlflow"), "models", "serve", "-m", uri,
                       "--env-manager", "local", "--host", "127.0.0.1", "-p", str(port), "-w", "1"],
                port, "/invocations", "mlflow", "/ping", {"MLFLOW_TRACKING_URI": cfg.tracking_uri})
        elif name in ("mlserver", "bentoml"):
            p = _peer(a, name, work, info, port)
            add(name, p.cmd, port, p.predict_path, name, p.ready_path, p.env, p.cwd)
    try:
        for s, ready, log in started:
            _wait(s.url + ready if ready != "/predict" else s.url + "/", s.proc, log)
            out.print(f"  ready: {s.name} at {s.url} (pid {s.pid})")
    except Exception:
        stop_servers([s for s, _, _ in started])
        raise
    servers = [s for s, _, _ in started]
    for s in servers:  # first request of each (imports, lazy init) outside any measurement
        loadgen.run(s.url, s.path, s.body, 1, 0.3, 0.2)
    return servers


def _abx_cmd(cfg: Any, uri: str, state: Path, port: int, micro_batch: bool,
             gc_freeze: bool = True) -> list[str]:
    """`abx serve` of the registered model as the only variant (the same model every peer gets)."""
    import yaml

    state.mkdir(parents=True, exist_ok=True)
    params = cfg.model_dump(mode="json")
    params["experiment"]["state_dir"] = str(state)
    params["tracking"]["tracking_uri"] = cfg.tracking_uri  # the registry of this run
    params["serving"].update({"port": port, "micro_batch": micro_batch, "gc_freeze": gc_freeze,
                              "weights": {"champion": 1.0}, "admin_token": "bench"})
    path = state / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    abx = str(Path(sys.executable).parent / "abx")
    return [abx, "serve", "--params", str(path), "-V", f"champion={uri}"]


def _peer(a: argparse.Namespace, name: str, work: Path, info: dict[str, Any], port: int
          ) -> peers.PeerServer:
    import mlflow.sklearn

    bin_dir = peers.ensure_venv(Path(a.peers_dir), name)
    model_file = work / "model.joblib"
    if not model_file.exists():
        peers.export_model(mlflow.sklearn.load_model(info["uri"]), model_file)
    if name == "mlserver":
        return peers.mlserver(bin_dir, work, model_file, port, [free_port(), free_port()])
    return peers.bentoml(bin_dir, work, model_file, port)
