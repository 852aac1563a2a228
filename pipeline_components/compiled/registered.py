"""Registration hook: compile a registered version, check it, log it beside the model, tag it.

The artifacts (``model.onnx``, ``trees.tl`` for tree ensembles, ``report.json`` with lineage:
model name and version, source, run, experiment id, commit, library versions, the measured
difference, the tolerance and sha256 digests) go under ``compiled/`` in the model version's own
MLflow run; the version gets ``abx.runtime`` (onnx | onnx+treelite | sklearn), the reason, the
max difference and the artifacts' URI. A model that cannot be compiled is tagged ``sklearn`` with
the reason: registration never fails because of this step.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any

from pipeline_components.compiled.convert import CompileReport, compile_model, save

log = logging.getLogger("abx.compiled")
ARTIFACT_DIR = "compiled"
TAG_RUNTIME, TAG_REASON, TAG_DIFF = "abx.runtime", "abx.runtime_reason", "abx.runtime_max_abs_diff"
TAG_URI = "abx.runtime_artifacts"


def compile_and_log(name: str, version: str, frame: Any, categorical: frozenset[str],
                    tolerance: float, lineage: dict[str, Any]) -> CompileReport:
    """Compile ``models:/name/version``, check it on ``frame`` (raw rows), log and tag it."""
    import mlflow.sklearn
    from mlflow import MlflowClient

    from pipeline_components.serving.variants import positive_column

    client = MlflowClient()
    mv = client.get_model_version(name, version)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = mlflow.sklearn.load_model(f"models:/{name}/{version}")
    frame = frame[[str(c) for c in getattr(model, "feature_names_in_", frame.columns)]]
    compiled, report = compile_model(model, frame, categorical & set(frame.columns), tolerance,
                                     positive_column(model))
    tags = {TAG_RUNTIME: report.runtime, TAG_REASON: report.reason[:4000],
            TAG_DIFF: "" if report.max_abs_diff is None else f"{report.max_abs_diff:.3g}"}
    if compiled is not None and mv.run_id:
        d = Path(tempfile.mkdtemp(prefix="abx-compiled-"))
        save(compiled, report, {"model_name": name, "model_version": version,
                                "source": mv.source, "run_id": mv.run_id, **lineage}, d)
        client.log_artifacts(mv.run_id, str(d), ARTIFACT_DIR)
        tags[TAG_URI] = f"runs:/{mv.run_id}/{ARTIFACT_DIR}"
    elif compiled is not None:
        report = CompileReport("sklearn", "the version has no run to log a compiled model in",
                               report.max_abs_diff, tolerance, report.probe_rows, report.tried)
        tags.update({TAG_RUNTIME: "sklearn", TAG_REASON: report.reason})
    for k, v in tags.items():
        client.set_model_version_tag(name, version, k, v)
    log.info("model %s v%s: runtime %s (%s)", name, version, report.runtime, report.reason)
    return report


def compile_version(cfg: Any, version: str) -> CompileReport | None:
    """The hook ``register_best`` calls: compile and check on the holdout split (idempotent).

    Returns None when ``registry.compile`` is off or the version already carries a verdict.
    """
    if not cfg.registry.compile:
        return None
    from mlflow import MlflowClient

    from pipeline_components.registry import git_commit
    from pipeline_components.training.study import load_xy

    name = cfg.registry.model_name
    if TAG_RUNTIME in MlflowClient().get_model_version(name, version).tags:
        return None
    try:
        x, _ = load_xy(cfg, "holdout")
    except Exception as exc:  # nothing to check against: say so, registration goes on
        MlflowClient().set_model_version_tag(name, version, TAG_RUNTIME, "sklearn")
        MlflowClient().set_model_version_tag(name, version, TAG_REASON,
                                             f"no holdout to check a compiled model on: {exc}")
        return None
    lineage = {"experiment_id": cfg.experiment.id, "git_commit": git_commit(),
               "probe": "holdout split"}
    return compile_and_log(name, version, x, frozenset(cfg.data.categorical_features),
                           cfg.registry.compile_tolerance, lineage)
