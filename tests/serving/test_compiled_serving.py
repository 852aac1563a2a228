"""The router serves a version's compiled model when it agrees with sklearn, else sklearn, and
says which and why on /admin/status (real MLflow store, real uvicorn over loopback)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import mlflow
import numpy as np
import pandas as pd

from pipeline_components import compiled
from pipeline_components.config import load_config
from pipeline_components.serving.testing import (
    TEST_DATA,
    TEST_TOKEN,
    ThreadServer,
    make_test_config,
    register_test_models,
    training_frame,
)


def test_compiled_champion_and_refused_challenger_on_status(
    tmp_path: Path, rows: list[dict[str, Any]]
) -> None:
    reg = tmp_path / "registry"
    cfg = make_test_config(reg, tmp_path / "state", {
        "serving.weights": {"champion": 0.5, "challenger": 0.5}})
    register_test_models(load_config(None, {**TEST_DATA, "experiment.state_dir": str(reg)}))
    mlflow.set_tracking_uri(cfg.tracking_uri)
    x, _ = training_frame(cfg, 400)
    cats = frozenset(cfg.data.categorical_features)
    ok = compiled.compile_and_log("abx-model", "1", x, cats, 1e-5, {"probe": "test"})
    # float32 ONNX Runtime is ~1e-7 from sklearn: a zero tolerance refuses it
    refused = compiled.compile_and_log("abx-model", "2", x, cats, 0.0, {"probe": "test"})
    assert (ok.runtime, refused.runtime) == ("onnx", "sklearn")
    server = ThreadServer(cfg).start()
    try:
        st = httpx.get(f"{server.url}/admin/status",
                       headers={"Authorization": f"Bearer {TEST_TOKEN}"}).json()
        champ, chall = st["variants"]["champion"], st["variants"]["challenger"]
        assert champ["path"] == "onnx" and champ["runtime"].startswith("onnx: max |diff|")
        assert chall["path"] == "numpy" and "disagrees with sklearn" in chall["runtime"]
        body = {"instances": [{"unit_id": f"u{i}", "features": r} for i, r in
                              enumerate(rows[:40])]}
        got = httpx.post(f"{server.url}/predict", json=body,
                         headers={"X-ABX-Variant": "champion",
                                  "Authorization": f"Bearer {TEST_TOKEN}"}).json()["predictions"]
    finally:
        server.stop()
    want = mlflow.sklearn.load_model("models:/abx-model/1").predict_proba(
        pd.DataFrame(rows[:40]))[:, 1]
    np.testing.assert_allclose([p["prediction"] for p in got], want, atol=1e-5, rtol=0)


def test_version_without_compiled_model_says_why_sklearn_serves(
    registry_dir: Path, tmp_path: Path
) -> None:
    # the shared test registry never compiles: its versions keep the sklearn path
    cfg = make_test_config(registry_dir, tmp_path / "state")
    server = ThreadServer(cfg, {"champion": "models:/abx-model/1"}).start()
    try:
        st = httpx.get(f"{server.url}/admin/status",
                       headers={"Authorization": f"Bearer {TEST_TOKEN}"}).json()
    finally:
        server.stop()
    champ = st["variants"]["champion"]
    assert champ["path"] == "numpy" and "no compiled model logged" in champ["runtime"]
