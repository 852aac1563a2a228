"""Loading: alias pinning, feature spec from the signature, numpy path == DataFrame path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest

from pipeline_components.config import Config, load_config
from pipeline_components.errors import DeploymentError, RegistryError
from pipeline_components.serving.fastpath import numpy_ready
from pipeline_components.serving.testing import TEST_DATA, build_model, training_frame
from pipeline_components.serving.variants import load_variant


def test_loads_registered_alias_on_numpy_path(
    make_cfg: Callable[..., Config], rows: list[dict[str, Any]]
) -> None:
    cfg = make_cfg()
    mlflow.set_tracking_uri(cfg.tracking_uri)
    champ = load_variant("champion", "models:/abx-model@champion")
    chall = load_variant("challenger", "models:/abx-model@challenger")
    assert (champ.model_version, chall.model_version) == ("1", "2")
    assert champ.path == "numpy"
    assert champ.spec.categorical == {"segment", "device"}
    assert champ.spec.names[:2] == ("x0", "x1")
    original = mlflow.sklearn.load_model("models:/abx-model/1")
    frame = pd.DataFrame(rows)[list(champ.spec.names)]
    np.testing.assert_allclose(champ.predict(rows), original.predict_proba(frame)[:, 1],
                               rtol=1e-12)


def test_missing_alias_names_the_uri(make_cfg: Callable[..., Config]) -> None:
    mlflow.set_tracking_uri(make_cfg().tracking_uri)
    with pytest.raises(RegistryError, match="abx-model@nope"):
        load_variant("x", "models:/abx-model@nope")


def test_numpy_rewrite_matches_dataframe_on_shuffled_columns() -> None:
    # Rows are built in the trained order, whatever order the request's keys came in.
    cfg = load_config(None, TEST_DATA)
    x, y = training_frame(cfg, 600)
    model = build_model(cfg).fit(x, y)
    fast = numpy_ready(model, list(x.columns))
    got = fast.predict_proba(x.to_numpy(dtype=object))[:, 1]
    np.testing.assert_allclose(got, model.predict_proba(x)[:, 1], rtol=1e-12)
    assert not hasattr(fast, "feature_names_in_") and hasattr(model, "feature_names_in_")


def test_skops_tree_model_on_numpy_path(
    make_cfg: Callable[..., Config], rows: list[dict[str, Any]]
) -> None:
    # The training stage logs with skops; a tree model behind the same preprocessor must load
    # and take the numpy path with identical answers.
    import skops.io as sio
    from mlflow.models import infer_signature
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline

    from pipeline_components.features import build_preprocessor

    cfg = make_cfg()
    mlflow.set_tracking_uri(cfg.tracking_uri)
    x, y = training_frame(cfg, 600)
    model = Pipeline([("pre", build_preprocessor(cfg)),
                      ("clf", HistGradientBoostingClassifier(max_iter=20))]).fit(x, y)
    trusted = sio.get_untrusted_types(data=sio.dumps(model))
    mlflow.set_experiment("skops-test")
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model, name="model", signature=infer_signature(x.head(5)),
            pip_requirements=["scikit-learn"], serialization_format="skops",
            skops_trusted_types=trusted)
    var = load_variant("hgb", info.model_uri)
    assert var.path == "numpy" and var.spec.categorical == {"segment", "device"}
    np.testing.assert_allclose(var.predict(rows), model.predict_proba(pd.DataFrame(rows))[:, 1],
                               rtol=1e-12)


class _Trap:
    """Unpickling this runs code (here: makes a directory), like any pickled payload could."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        import os

        return os.makedirs, (self.path,)


def _log(cfg: Config, model: Any, fmt: str, trusted: list[str] | None = None) -> str:
    from mlflow.models import infer_signature

    x, _ = training_frame(cfg, 50)
    mlflow.set_experiment("formats-test")
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(model, name="model", signature=infer_signature(x.head(5)),
                                        pip_requirements=["scikit-learn"],
                                        serialization_format=fmt, skops_trusted_types=trusted)
    return str(info.model_uri)


@pytest.mark.parametrize("fmt", ["cloudpickle", "pickle"])
def test_pickled_model_is_refused_unopened(
    make_cfg: Callable[..., Config], tmp_path: Path, fmt: str
) -> None:
    cfg = make_cfg()
    mlflow.set_tracking_uri(cfg.tracking_uri)
    x, y = training_frame(cfg, 300)
    model = build_model(cfg).fit(x, y)
    marker = tmp_path / "unpickled"
    model.trap = _Trap(str(marker))  # type: ignore[attr-defined]
    uri = _log(cfg, model, fmt)
    with pytest.raises(DeploymentError) as err:
        load_variant("challenger", uri)
    msg = str(err.value)
    assert uri in msg and f"serialized as {fmt!r}" in msg and "flavor 'sklearn'" in msg
    assert "'challenger'" in msg and not marker.exists()  # refused before any unpickling


def test_skops_model_trusting_a_foreign_type_is_refused(make_cfg: Callable[..., Config]) -> None:
    # The model's own MLmodel says to trust _operator.neg: our list, not the model's, decides.
    import operator

    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    cfg = make_cfg()
    mlflow.set_tracking_uri(cfg.tracking_uri)
    x, y = training_frame(cfg, 300)
    num = x[["x0", "x1"]]
    model = Pipeline([("f", FunctionTransformer(func=operator.neg)),
                      ("c", LogisticRegression())]).fit(num, y)
    uri = _log(cfg, model, "skops", trusted=["_operator.neg"])
    with pytest.raises(DeploymentError, match=r"_operator\.neg") as err:
        load_variant("challenger", uri)
    assert uri in str(err.value) and "trusted" in str(err.value)
    var = load_variant("challenger", uri, trusted=["_operator.neg"])  # an explicit opt-in loads
    assert var.spec.names == ("x0", "x1")
