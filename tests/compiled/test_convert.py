"""Compiled models agree with their sklearn originals, or are refused with the reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from pipeline_components import compiled
from pipeline_components.config import load_config
from pipeline_components.serving.testing import TEST_DATA, training_frame
from pipeline_components.training import families

CFG = load_config(None, TEST_DATA)
CATS = frozenset(CFG.data.categorical_features)
TOL = 1e-5


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.Series, pd.DataFrame]:
    """(train X, train y, holdout X) from the project's synthetic generator."""
    x, y = training_frame(CFG, 1600)
    return x.iloc[:1200], y.iloc[:1200], x.iloc[1200:]


def _fit(family: str, params: dict[str, Any], data: Any) -> Pipeline:
    return families.build_pipeline(CFG, family, params).fit(data[0], data[1])


@pytest.mark.parametrize(("family", "params", "runtime"), [
    ("logreg", {"C": 0.5}, "onnx"),
    ("hist_gbdt", {"max_iter": 30, "max_leaf_nodes": 15}, "onnx+treelite"),
])
def test_compiled_model_agrees_with_sklearn_on_holdout(
    family: str, params: dict[str, Any], runtime: str, data: Any
) -> None:
    model = _fit(family, params, data)
    holdout = data[2]
    comp, report = compiled.compile_model(model, holdout, CATS, TOL)
    assert comp is not None and report.runtime == runtime, report.tried
    assert report.max_abs_diff is not None and report.max_abs_diff <= TOL
    got = comp.predict(holdout.to_dict("records"))
    np.testing.assert_allclose(got, model.predict_proba(holdout)[:, 1], atol=TOL, rtol=0)
    # one row at a time gives the same numbers as a batch (the router sends both)
    one = comp.predict(holdout.iloc[:1].to_dict("records"))
    np.testing.assert_allclose(one, got[:1], atol=1e-12, rtol=0)


def test_unconvertible_model_is_served_by_sklearn_with_the_reason(data: Any) -> None:
    # skl2onnx cannot convert a FunctionTransformer holding an arbitrary Python function.
    model = _fit("logreg", {}, data)
    odd = Pipeline([("pre", model.steps[0][1]), ("odd", FunctionTransformer(np.tanh)),
                    ("model", model.steps[1][1])])
    comp, report = compiled.compile_model(odd, data[2], CATS, TOL)
    assert comp is None and report.runtime == "sklearn"
    assert "onnx: conversion failed" in report.reason


def test_disagreement_beyond_the_tolerance_is_refused(data: Any) -> None:
    # ONNX Runtime computes the linear model in float32: close to sklearn, but not within 0.
    model = _fit("logreg", {}, data)
    comp, report = compiled.compile_model(model, data[2], CATS, tolerance=0.0)
    assert comp is None and report.runtime == "sklearn"
    assert "disagrees with sklearn: max |diff|" in report.tried["onnx"]


def test_saved_runtime_loads_and_a_tampered_file_is_refused(data: Any, tmp_path: Path) -> None:
    model = _fit("hist_gbdt", {"max_iter": 10}, data)
    comp, report = compiled.compile_model(model, data[2], CATS, TOL)
    assert comp is not None
    compiled.save(comp, report, {"model_version": "7"}, tmp_path)
    again, meta = compiled.load(tmp_path)
    assert meta["lineage"] == {"model_version": "7"} and meta["versions"]["treelite"] != "missing"
    rows = data[2].iloc[:50].to_dict("records")
    np.testing.assert_array_equal(again.predict(rows), comp.predict(rows))
    (tmp_path / "trees.tl").write_bytes(b"x" + (tmp_path / "trees.tl").read_bytes()[1:])
    with pytest.raises(ValueError, match="trees.tl: sha256"):
        compiled.load(tmp_path)
