"""Peer model servers a user would pick, each run from its own virtual environment.

MLServer (mlserver-sklearn, adaptive batching) and BentoML (a ``batchable`` API) are installed
from PyPI into ``<peers dir>/<name>`` the first time the benchmark needs them, never into the
project's environment, with the project's scikit-learn version (a pickled pipeline only loads in
the version that wrote it). Each serves the same registered model, exported once as a joblib file,
the way each peer's own documentation has a user do it: MLServer's sklearn runtime on a V2
request decoded to a DataFrame, BentoML with a service that builds a DataFrame from JSON rows.
The pipeline holds abx's own preprocessing steps (``pipeline_components.preprocess``: the median
imputer and the category bucket), so each peer gets that one module on its ``PYTHONPATH``, as a
user ships custom transformers with a model; nothing else of abx.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
PACKAGE = HERE.parents[1] / "pipeline_components"
PINS = {
    # uvloop 0.22 made get_event_loop() raise, which kills MLServer 1.7.1's inference workers
    "mlserver": ["mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop<0.22"],
    "bentoml": ["bentoml==1.4.40", "pandas"],
}
BATCH = {"max_batch_size": 32, "max_batch_time_s": 0.002}  # what both peers are given


@dataclass(frozen=True)
class PeerServer:
    """How to start one peer and talk to it."""

    name: str
    cmd: list[str]
    cwd: Path
    env: dict[str, str]
    ready_path: str
    predict_path: str


def ensure_venv(root: Path, name: str) -> Path:
    """``root/name`` with the peer installed (created on first use; ~1-3 min); returns its bin."""
    venv = root / name
    stamp = venv / ".abx-installed"
    pins = [*PINS[name], f"scikit-learn=={version('scikit-learn')}"]
    if stamp.is_file() and stamp.read_text() == " ".join(pins):
        return venv / "bin"
    root.mkdir(parents=True, exist_ok=True)
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    print(f"installing {' '.join(pins)} into {venv} ...", flush=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *pins], check=True)
    stamp.write_text(" ".join(pins))
    return venv / "bin"


def export_model(model: Any, path: Path) -> Path:
    """The registered sklearn pipeline as a joblib file (mlserver-sklearn's format)."""
    import joblib

    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, path)
    return path


def model_code(work: Path) -> Path:
    """A directory holding only ``pipeline_components/preprocess.py`` (what unpickling the
    pipeline imports; it needs numpy, pandas and scikit-learn only), for the peers' path."""
    d = work / "model_code" / "pipeline_components"
    d.mkdir(parents=True, exist_ok=True)
    for name in ("__init__.py", "preprocess.py"):
        shutil.copy(PACKAGE / name, d / name)
    return d.parent


def mlserver(bin_dir: Path, work: Path, model_file: Path, port: int, ports: list[int]
             ) -> PeerServer:
    """MLServer with adaptive batching, default (one) parallel inference worker."""
    d = work / "mlserver"
    (d / "abx").mkdir(parents=True, exist_ok=True)
    shutil.copy(model_file, d / "abx" / "model.joblib")
    (d / "settings.json").write_text(json.dumps({
        "http_port": port, "grpc_port": ports[0], "metrics_port": ports[1], "host": "127.0.0.1",
        "debug": False}))
    (d / "abx" / "model-settings.json").write_text(json.dumps({
        "name": "abx", "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib"},
        "max_batch_size": BATCH["max_batch_size"], "max_batch_time": BATCH["max_batch_time_s"]}))
    return PeerServer("mlserver", [str(bin_dir / "mlserver"), "start", str(d)], d,
                      _env(bin_dir, work), "/v2/models/abx/ready", "/v2/models/abx/infer")


def bentoml(bin_dir: Path, work: Path, model_file: Path, port: int) -> PeerServer:
    """BentoML 1.4 service (benchmarks/serving/peer_bentoml.py) with a batchable API."""
    d = work / "bentoml"
    d.mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE / "peer_bentoml.py", d / "peer_bentoml.py")
    env = {**_env(bin_dir, work), "ABX_PEER_MODEL": str(model_file),
           "BENTOML_HOME": str(d / "home"), "BENTOML_DO_NOT_TRACK": "True",
           "ABX_PEER_MAX_BATCH": str(BATCH["max_batch_size"])}
    cmd = [str(bin_dir / "bentoml"), "serve", "peer_bentoml:AbxModel", "--host", "127.0.0.1",
           "--port", str(port)]
    return PeerServer("bentoml", cmd, d, env, "/readyz", "/predict")


def _env(bin_dir: Path, work: Path) -> dict[str, str]:
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "OMP_NUM_THREADS": "1",
            "VIRTUAL_ENV": str(bin_dir.parent), "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(model_code(work))}


def mlserver_body(feats: dict[str, Any]) -> dict[str, Any]:
    """A V2 inference request of one row, decoded by MLServer's pandas codec."""
    inputs = [{"name": k, "shape": [1], "datatype": "BYTES" if isinstance(v, str) else "FP64",
               "data": [v]} for k, v in feats.items()]
    return {"parameters": {"content_type": "pd"}, "inputs": inputs,
            "outputs": [{"name": "predict_proba"}]}


def bentoml_body(feats: dict[str, Any]) -> dict[str, Any]:
    return {"rows": [feats]}
