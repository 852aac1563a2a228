"""Registration converts the winner, checks it on the holdout and logs it beside the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from pipeline_components import compiled
from pipeline_components.config import Config, load_config
from pipeline_components.registry import register_best
from pipeline_components.training import train_family
from pipeline_components.training.study import load_xy

REPO = Path(__file__).resolve().parents[2]
NAME = "abx-compiled-model"


@pytest.fixture(scope="module")
def registered(data_overrides: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
               ) -> dict[str, tuple[Config, dict[str, Any]]]:
    """The two families abx serves most, trained and registered by the real stages."""
    state = tmp_path_factory.mktemp("compiled-registry")
    out = {}
    for eid, family in (("c-hgbt", "hist_gbdt"), ("c-lr", "logreg")):
        cfg = load_config(REPO / "params.yaml", {
            **data_overrides, "experiment.state_dir": str(state), "experiment.id": eid,
            "training.families": [family], "training.n_trials": 2, "training.cv_folds": 2,
            "training.workers": 1, "training.pruning": False, "registry.model_name": NAME})
        out[eid] = (cfg, register_best(cfg, [train_family(cfg, family)]))
    return out


@pytest.mark.parametrize(("eid", "runtime"), [("c-hgbt", "onnx+treelite"), ("c-lr", "onnx")])
def test_registered_version_carries_a_checked_compiled_model_with_lineage(
    registered: dict[str, tuple[Config, dict[str, Any]]], eid: str, runtime: str, tmp_path: Path
) -> None:
    cfg, reg = registered[eid]
    tags = reg["tags"]
    tol = cfg.registry.compile_tolerance
    assert tags[compiled.TAG_RUNTIME] == runtime, tags.get(compiled.TAG_REASON)
    assert float(tags[compiled.TAG_DIFF]) <= tol
    d = mlflow.artifacts.download_artifacts(tags[compiled.TAG_URI], dst_path=str(tmp_path))
    comp, meta = compiled.load(Path(d))
    assert meta["lineage"]["model_version"] == reg["version"]
    assert meta["lineage"]["run_id"] == reg["run_id"] and meta["probe_rows"] > 100
    # the logged artifact agrees with the registered sklearn model on the whole holdout
    model = mlflow.sklearn.load_model(reg["model_uri"])
    x, _ = load_xy(cfg, "holdout")
    np.testing.assert_allclose(comp.predict(x.to_dict("records")),
                               model.predict_proba(x)[:, 1], atol=tol, rtol=0)


def test_registering_again_keeps_the_compiled_verdict(
    registered: dict[str, tuple[Config, dict[str, Any]]]
) -> None:
    cfg, reg = registered["c-lr"]
    again = register_best(cfg)
    assert again["reused"] and again["version"] == reg["version"]
    assert compiled.compile_version(cfg, reg["version"]) is None  # already tagged: untouched
    tags = MlflowClient(cfg.tracking_uri).get_model_version(NAME, reg["version"]).tags
    assert tags[compiled.TAG_URI] == reg["tags"][compiled.TAG_URI]


def test_compile_off_leaves_the_version_untagged(make_cfg: Any) -> None:
    cfg = make_cfg({"registry.compile": False, "experiment.id": "no-compile"})
    reg = register_best(cfg, [train_family(cfg, "logreg")])
    assert compiled.TAG_RUNTIME not in reg["tags"]
