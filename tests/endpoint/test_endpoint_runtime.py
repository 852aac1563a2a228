"""The endpoint loads variants with the configured runtime and trusted types, as the per-experiment
router does: a compiled (ONNX) version is served by sklearn when ``serving.runtime: sklearn``."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from pipeline_components import compiled
from pipeline_components.config import load_config
from pipeline_components.deploy import LocalBackend
from pipeline_components.serving import operations as ops
from pipeline_components.serving.testing import (
    TEST_DATA,
    make_test_config,
    register_test_models,
    training_frame,
)
from tests.endpoint.conftest import ENDPOINT_BASE

pytestmark = pytest.mark.slow


def test_endpoint_loads_with_the_configured_runtime(tmp_path: Path) -> None:
    # (with runtime auto the same version loads as onnx: tests/serving/test_compiled_serving.py)
    reg = tmp_path / "registry"
    register_test_models(load_config(None, {**TEST_DATA, "experiment.state_dir": str(reg)}))
    cfg = make_test_config(reg, tmp_path / "state",
                           {**ENDPOINT_BASE, "serving.runtime": "sklearn"})
    mlflow.set_tracking_uri(cfg.tracking_uri)
    x, _ = training_frame(cfg, 400)
    assert compiled.compile_and_log("abx-model", "1", x, frozenset(cfg.data.categorical_features),
                                    1e-5, {"probe": "test"}).runtime == "onnx"
    backend = LocalBackend()
    ops.ensure_endpoint(cfg, "test")
    backend.start_endpoint(cfg)
    try:
        loaded = [e for e in ops.open_control(cfg).events(cfg.endpoint.name)
                  if e["kind"] == "loaded"]
    finally:
        backend.stop_endpoint(cfg)
        ops._STORES.clear()
    assert loaded and loaded[-1]["detail"]["path"] == "numpy", loaded
