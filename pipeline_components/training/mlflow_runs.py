"""MLflow records of a study: one parent run, one nested run per trial, the refit best model.

Trial runs are written by the parent process *after* the workers finish, from ``study.trials``
(start/end times, params, fold scores, state), not by the workers themselves: worker processes
never contend for the SQLite tracking database, and a worker crash cannot leave a half-written
run. Every write is keyed (study name on the parent run, trial number on each child), so a retry
adds only what is missing and the refit is skipped when the same best trial was already logged.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from typing import Any

import numpy as np
import optuna
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from pipeline_components.config import Config
from pipeline_components.errors import AbxError
from pipeline_components.leakage import log_training_units
from pipeline_components.tracking import with_retries
from pipeline_components.training import families
from pipeline_components.training.study import is_surplus, load_xy

ROLE, STUDY, TRIAL, FAMILY, EXPERIMENT = (
    "abx_role", "abx_study", "abx_trial", "abx_family", "abx_experiment_id"
)
_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED", "RUNNING": "RUNNING"}
# Our own preprocessing (imputation, category buckets) travels inside every model.
_SAFE_PREFIXES = ("sklearn.", "numpy.", "scipy.", "builtins.", "collections.",
                  "pipeline_components.preprocess.")


def _ms(dt: Any) -> int | None:
    return int(dt.timestamp() * 1000) if dt is not None else None


def parent_run(client: MlflowClient, exp_id: str, cfg: Config, family: str, name: str) -> str:
    """The study's parent run id: found by its tags on a retry, created otherwise."""
    found = client.search_runs(
        [exp_id], filter_string=f"tags.{STUDY} = '{name}' and tags.{ROLE} = 'study'", max_results=1
    )
    if found:
        return found[0].info.run_id
    tags = {ROLE: "study", STUDY: name, FAMILY: family, EXPERIMENT: cfg.experiment.id}
    run = with_retries(lambda: client.create_run(exp_id, tags=tags, run_name=f"{family}-study"))
    return run.info.run_id


def _trial_batch(cfg: Config, t: optuna.trial.FrozenTrial) -> tuple[list, list, list]:
    end = _ms(t.datetime_complete) or _ms(t.datetime_start) or 0
    metrics = [Metric(f"cv_{cfg.training.metric}", v, end, step)
               for step, v in sorted(t.intermediate_values.items())]
    if t.value is not None:
        metrics.append(Metric(cfg.training.metric, float(t.value), end, 0))
    if t.duration is not None:
        metrics.append(Metric("duration_s", t.duration.total_seconds(), end, 0))
    params = [Param(k, str(v)) for k, v in t.params.items()]
    tags = [RunTag("state", t.state.name), RunTag(TRIAL, str(t.number))]
    return metrics, params, tags


def _log_trial(client: MlflowClient, exp_id: str, parent_id: str,
               t: optuna.trial.FrozenTrial, cfg: Config) -> None:
    tags = {"mlflow.parentRunId": parent_id, TRIAL: str(t.number), ROLE: "trial"}
    run = with_retries(lambda: client.create_run(
        exp_id, start_time=_ms(t.datetime_start), tags=tags, run_name=f"trial-{t.number}"))
    metrics, params, rtags = _trial_batch(cfg, t)
    rid = run.info.run_id
    with_retries(lambda: client.log_batch(rid, metrics=metrics, params=params, tags=rtags))
    status = _STATUS.get(t.state.name, "FAILED")
    with_retries(lambda: client.set_terminated(rid, status, _ms(t.datetime_complete)))


def log_trials(client: MlflowClient, exp_id: str, parent_id: str, study: optuna.Study,
               cfg: Config) -> int:
    """Write one nested run per finished/failed trial not logged yet; returns how many were new."""
    children = client.search_runs(
        [exp_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'", max_results=50_000
    )
    done = {r.data.tags.get(TRIAL) for r in children}
    new = 0
    for t in study.get_trials(deepcopy=False):
        if t.state != optuna.trial.TrialState.RUNNING and str(t.number) not in done \
                and not is_surplus(t):
            _log_trial(client, exp_id, parent_id, t, cfg)
            new += 1
    return new


def holdout_metrics(model: Any, cfg: Config) -> dict[str, float]:
    """roc_auc, log_loss and accuracy of a fitted model on the holdout split."""
    from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

    x, y = load_xy(cfg, "holdout")
    proba = model.predict_proba(x)[:, 1]
    return {
        "roc_auc": float(roc_auc_score(y, proba)),
        "log_loss": float(log_loss(y, np.clip(proba, 1e-15, 1 - 1e-15), labels=[0, 1])),
        "accuracy": float(accuracy_score(y, (proba >= 0.5).astype(int))),
    }


@contextmanager
def quiet_skops_module_scan() -> Iterator[None]:
    """Silence the FutureWarnings skops' module scan draws from other libraries' shims.

    To name each saved object's module, skops (``skops.io._utils.whichmodule``) calls
    ``getattr(module, name)`` on every loaded module. In an Airflow task those include Airflow's
    deprecated-module shims, which answer every such lookup with a FutureWarning whose text names
    the attribute: ~1,160 distinct warnings per saved model, burying the task log. They say
    nothing about the model, so exactly those (FutureWarning raised from that skops module) are
    ignored while saving; any other warning still shows.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"skops\.io\._utils")
        yield


def trusted_types(model: Any) -> list[str]:
    """The types skops must be told to trust for *this* model, restricted to a safe allow-list.

    Only types from sklearn/numpy/scipy are ever trusted; anything else means the pipeline holds
    an object we did not put there, and logging refuses rather than trusting it blindly.
    """
    import skops.io as sio

    untrusted = sio.get_untrusted_types(data=sio.dumps(model))
    bad = [t for t in untrusted if not t.startswith(_SAFE_PREFIXES)]
    if bad:
        raise AbxError(f"model holds types outside the skops allow-list {_SAFE_PREFIXES}: {bad}")
    return sorted(untrusted)


def pip_requirements() -> list[str]:
    """Exact pins of what loading the model needs (inferring them costs ~9 s per log_model)."""
    pkgs = ("mlflow", "scikit-learn", "skops", "numpy", "pandas", "scipy")
    return [f"{p}=={version(p)}" for p in pkgs]


def refit_best(cfg: Config, family: str, study: optuna.Study, parent_id: str) -> dict[str, Any]:
    """Refit the best trial on the whole train split and log it (model + holdout metrics).

    Skipped when the parent run already holds a model of the same best trial (a retry).
    """
    import mlflow
    from mlflow.models import infer_signature

    client = MlflowClient()
    best = study.best_trial
    run = client.get_run(parent_id)
    tags = run.data.tags
    if tags.get("abx_refit_trial") == str(best.number) and "abx_model_uri" in tags:
        return {"model_uri": tags["abx_model_uri"],
                "holdout": {k[8:]: v for k, v in run.data.metrics.items()
                            if k.startswith("holdout_")}}
    x, y = load_xy(cfg, "train")
    model = families.build_pipeline(cfg, family, best.params).fit(x, y)
    metrics = holdout_metrics(model, cfg)
    example = x.head(5)
    with mlflow.start_run(run_id=parent_id), quiet_skops_module_scan():
        info = mlflow.sklearn.log_model(
            model, name="model", signature=infer_signature(example, model.predict(example)),
            input_example=example, pip_requirements=pip_requirements(),
            serialization_format="skops", skops_trusted_types=trusted_types(model),
        )
        mlflow.log_metrics({f"holdout_{k}": v for k, v in metrics.items()})
        mlflow.log_metric(f"best_cv_{cfg.training.metric}", float(study.best_value))
        # Tags, not params: a resumed study may change its best trial, and params are immutable.
        mlflow.set_tags({"abx_refit_trial": str(best.number), "abx_model_uri": info.model_uri,
                         "abx_best_params": json.dumps(best.params, sort_keys=True)})
    log_training_units(client, parent_id, cfg)  # the gate's leak check reads it back
    return {"model_uri": info.model_uri, "holdout": metrics}
