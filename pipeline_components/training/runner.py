"""Entry points of the train stage: ``train_family`` (one study) and ``train_all`` (every family).

Order matters for "clear errors, nothing half-written": the config is validated and the tracking
store probed *before* a study is created; workers run; only then does the parent write MLflow runs
and the per-family result file ``<state>/experiments/<id>/training/<family>.json`` that
``registry.register_best`` reads when no results are passed in.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from pipeline_components.config import Config
from pipeline_components.errors import AbxError
from pipeline_components.fileio import write_json
from pipeline_components.tracking import configure_mlflow, experiment_id
from pipeline_components.training import families, mlflow_runs
from pipeline_components.training import study as st

Progress = Callable[[str, int, int], None]  # (family, finished trials, budget)


def result_path(cfg: Config, family: str) -> Path:
    """Where a family's training result (small JSON) is written."""
    return cfg.experiment_dir / "training" / f"{family}.json"


def _redact(url: str) -> str:
    if "://" not in url:
        return url
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _run_processes(cfg: Config, family: str, storage_url: str, poll: Callable[[], Any]) -> None:
    cfg.experiment_dir.mkdir(parents=True, exist_ok=True)
    barrier = Path(tempfile.mkdtemp(prefix=f"{family}-start-", dir=cfg.experiment_dir))
    raw = json.dumps({"config": cfg.model_dump(mode="json"), "storage": storage_url,
                      "barrier": [str(barrier), cfg.training.workers]})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "pipeline_components.training.worker", family]
    procs = []
    for i in range(cfg.training.workers):
        p = subprocess.Popen([*cmd, str(i)], stdin=subprocess.PIPE, env=env, text=True)
        assert p.stdin is not None
        p.stdin.write(raw)
        p.stdin.close()
        procs.append(p)
    try:
        while any(p.poll() is None for p in procs):
            poll()
            time.sleep(0.5)
    finally:  # an interrupted parent must not leave orphan workers running trials
        for p in procs:
            if p.poll() is None:
                p.terminate()
            p.wait()
        shutil.rmtree(barrier, ignore_errors=True)
    failed = [(i, p.returncode) for i, p in enumerate(procs) if p.returncode != 0]
    if failed:
        raise AbxError(f"family {family}: training workers failed (index, exit code): {failed}; "
                       "their tracebacks are printed above")


def run_workers(cfg: Config, family: str, storage_url: str, on_progress: Progress | None) -> None:
    """Run ``training.workers`` processes on the shared study and wait for them."""
    study = optuna.load_study(study_name=st.study_name(cfg, family),
                              storage=st.open_storage(storage_url))
    budget = cfg.training.n_trials

    def report() -> None:
        if on_progress:
            on_progress(family, st.finished_trials(study), budget)

    st.fail_stale_trials(study)  # a retry after a crash: the dead workers' trials free up
    if st.finished_trials(study) >= budget:  # a retry of a finished study: nothing to run
        pass
    elif cfg.training.workers == 1:  # in-process: no start-up cost for the small case
        st.optimize(cfg, family, 0, storage_url, on_trial=report)
    else:
        _run_processes(cfg, family, storage_url, report)
    report()


def _write_result(cfg: Config, family: str, result: dict[str, Any]) -> None:
    write_json(result_path(cfg, family), result)


def _summary(study: optuna.Study) -> dict[str, int]:
    states = [t.state.name.lower() for t in study.get_trials(deepcopy=False)
              if not st.is_surplus(t)]
    return {s: states.count(s) for s in ("complete", "pruned", "fail")}


def train_family(cfg: Config, family: str, on_progress: Progress | None = None) -> dict[str, Any]:
    """Run (or resume) one family's study, log it to MLflow, refit and log the best model.

    Returns:
        ``{"family", "study_name", "storage", "metric", "best_value", "best_trial",
        "best_params", "trials": {complete, pruned, fail}, "run_id", "model_uri", "holdout",
        "duration_s"}``, also written to ``result_path(cfg, family)``.

    Raises:
        ConfigError: unknown family or bad search space (names the params.yaml key).
        DataError: the features stage has not written the train split.
        TrackingError: the tracking store is unreachable (nothing is created).
    """
    families.search_space(cfg, family)
    st.load_xy(cfg, "train")  # DataError naming the missing split before anything is created
    client = configure_mlflow(cfg)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.perf_counter()
    spec = st.storage_spec(cfg, family)
    study = st.create_study(cfg, family, st.open_storage(spec))
    run_workers(cfg, family, spec, on_progress)
    if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        fails = [t.user_attrs.get("fail_reason") or t.system_attrs.get("fail_reason", "?")
                 for t in study.trials
                 if t.state == optuna.trial.TrialState.FAIL and not st.is_surplus(t)][:1]
        first = fails[0] if fails else "none ran; check training.timeout_s"
        raise AbxError(f"family {family}: study {study.study_name} has no completed trial "
                       f"(first failure: {first})")
    exp_id = experiment_id(client, cfg)
    parent = mlflow_runs.parent_run(client, exp_id, cfg, family, study.study_name)
    mlflow_runs.log_trials(client, exp_id, parent, study, cfg)
    refit = mlflow_runs.refit_best(cfg, family, study, parent)
    best = study.best_trial
    result = {
        "family": family, "study_name": study.study_name, "storage": _redact(spec),
        "metric": cfg.training.metric, "best_value": float(study.best_value),
        "best_trial": best.number, "best_params": best.params, "trials": _summary(study),
        "run_id": parent, "model_uri": refit["model_uri"], "holdout": refit["holdout"],
        "experiment_id": cfg.experiment.id, "duration_s": round(time.perf_counter() - started, 3),
    }
    _write_result(cfg, family, result)
    return result


def failed_result(cfg: Config, family: str, exc: Exception) -> dict[str, Any]:
    """The result of a family that could not fit: its reason, written like a success's."""
    result = {"family": family, "failed": True, "error": f"{type(exc).__name__}: {exc}"
              if not isinstance(exc, AbxError) else str(exc),
              "experiment_id": cfg.experiment.id}
    _write_result(cfg, family, result)
    return result


def train_family_isolated(
    cfg: Config, family: str, on_progress: Progress | None = None
) -> dict[str, Any]:
    """``train_family``, but a family that cannot fit the data returns a failed result (with
    its reason) instead of raising, so the other families still run. Config and data errors
    (which every family would hit) still raise."""
    from pipeline_components.errors import ConfigError, DataError

    try:
        return train_family(cfg, family, on_progress)
    except (ConfigError, DataError):
        raise
    except Exception as exc:  # noqa: BLE001 - one family's failure must not stop the others
        return failed_result(cfg, family, exc)


def train_all(cfg: Config, on_progress: Progress | None = None) -> list[dict[str, Any]]:
    """Train every family in ``training.families`` (each with ``training.workers`` processes).

    The whole config is validated and the tracking store probed before the first study starts.
    A family that fails is reported in its result (``failed``, ``error``); the others finish.
    """
    families.validate_training_config(cfg)
    configure_mlflow(cfg)
    return [train_family_isolated(cfg, f, on_progress) for f in cfg.training.families]
