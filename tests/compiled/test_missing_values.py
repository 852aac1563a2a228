"""Compiled runtimes answer nulls and unseen categories as the sklearn model does."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline_components import compiled
from pipeline_components.config import load_config
from pipeline_components.data import generate_synthetic
from pipeline_components.features import feature_columns
from pipeline_components.training import families


@pytest.mark.parametrize(("family", "runtime"), [("logreg", "onnx"),
                                                 ("hist_gbdt", "onnx+treelite")])
def test_nulls_and_unseen_categories_compile_and_agree(family: str, runtime: str) -> None:
    cfg = load_config(None, {"data.numeric_features": [f"x{i}" for i in range(6)],
                             "data.categorical_features": {"segment": ["new", "casual", "loyal"],
                                                           "device": ["mobile", "desktop"]}})
    df = generate_synthetic(cfg, n=800)
    x = df[feature_columns(cfg)].copy()
    x.loc[:40, "x0"] = np.nan
    x.loc[41:80, "device"] = None
    x.loc[81:90, "segment"] = "vip"  # never in the allowed list: the explicit "other" level
    model = families.build_pipeline(cfg, family, {}).fit(x, df["converted"])
    comp, report = compiled.compile_model(model, x.iloc[:200], frozenset(["segment", "device"]),
                                          1e-5)
    assert comp is not None and report.runtime == runtime, report.tried
    rows = np.array([[None, 0.1, -0.2, 0.3, 0.0, 1.0, "platinum", None],
                     [0.5, 0.1, -0.2, 0.3, 0.0, 1.0, "new", "tablet"]], dtype=object)
    want = model.predict_proba(pd.DataFrame(rows, columns=feature_columns(cfg)))
    np.testing.assert_allclose(comp.predict_proba(rows), want, atol=1e-5, rtol=0)
