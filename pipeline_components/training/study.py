"""One Optuna study per family: storage, sampler, pruner, the cross-validated objective, a worker.

Storage is chosen by config, never by code: ``training.storage: null`` means a
``JournalStorage(JournalFileBackend)`` file under ``<state_dir>/experiments/<id>/optuna/`` (several
processes on one machine, file-locked appends, no server), any other value is an RDB URL
(PostgreSQL when workers run on several machines). The parent creates the study; each worker
process loads it by name and runs trials until the study as a whole has ``n_trials`` finished
trials (``MaxTrialsCallback``), so N workers share one budget instead of running N budgets.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import optuna
import pandas as pd
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.study import MaxTrialsCallback
from optuna.trial import FrozenTrial, TrialState

from pipeline_components.config import Config
from pipeline_components.training import families
from pipeline_components.training.search_space import suggest

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def study_name(cfg: Config, family: str) -> str:
    """Studies are keyed by experiment id and family, so a retry resumes instead of restarting."""
    return f"abx-{cfg.experiment.id}-{family}"


def storage_spec(cfg: Config, family: str) -> str:
    """A picklable description of the storage: an RDB URL, or the journal file's path."""
    if cfg.training.storage:
        return cfg.training.storage
    return str((cfg.experiment_dir / "optuna" / f"{family}.journal").resolve())


def open_storage(spec: str) -> BaseStorage:
    """Open the storage a spec names (``"://"`` means an RDB URL, anything else a journal file)."""
    if "://" in spec:
        # Heartbeats let a restarted run mark trials of a killed worker as failed.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(spec, heartbeat_interval=30, grace_period=90)
    Path(spec).parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(spec))


def create_study(cfg: Config, family: str, storage: BaseStorage | None = None) -> optuna.Study:
    """Create (or load, on a retry) the family's study; every metric is maximised."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # progress is ours to show
    return optuna.create_study(
        study_name=study_name(cfg, family),
        storage=storage or open_storage(storage_spec(cfg, family)),
        direction="maximize",
        load_if_exists=True,
    )


def finished_trials(study: optuna.Study) -> int:
    """How many trials count against the budget (complete or pruned)."""
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def _sampler(cfg: Config, worker_index: int) -> optuna.samplers.BaseSampler:
    # One seed per worker: same params + one worker => the same trials and the same best trial.
    return optuna.samplers.TPESampler(seed=cfg.experiment.seed + worker_index)


def _pruner(cfg: Config) -> optuna.pruners.BasePruner:
    if not cfg.training.pruning:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=0)


def cv_splits(cfg: Config, y: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds, fixed by the experiment seed so every trial sees the same folds."""
    from sklearn.model_selection import StratifiedKFold

    skf = StratifiedKFold(cfg.training.cv_folds, shuffle=True, random_state=cfg.experiment.seed)
    return list(skf.split(np.zeros(len(y)), y))


def make_objective(
    cfg: Config, family: str, x: pd.DataFrame, y: np.ndarray, worker_index: int = 0
) -> Any:
    """The objective: mean cross-validated ``training.metric``, reported after every fold.

    The running mean is reported as the intermediate value at step = fold index, so the median
    pruner stops a trial whose first folds are already worse than the median of earlier trials.
    """
    from sklearn.metrics import get_scorer

    space = families.search_space(cfg, family)
    scorer = get_scorer(cfg.training.metric)
    folds = cv_splits(cfg, y)

    def objective(trial: optuna.Trial) -> float:
        params = suggest(trial, space)
        trial.set_user_attr("worker", worker_index)  # lineage: which process ran this trial
        scores: list[float] = []
        started, cpu0 = time.perf_counter(), time.process_time()
        for step, (tr, va) in enumerate(folds):
            model = families.build_pipeline(cfg, family, params)
            try:
                model.fit(x.iloc[tr], y[tr])
                scores.append(float(scorer(model, x.iloc[va], y[va])))
            except Exception as exc:  # kept on the trial: the family's failure names it
                trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}"[:500])
                raise
            trial.report(float(np.mean(scores)), step)
            if trial.should_prune():
                trial.set_user_attr("fold_scores", scores)
                raise optuna.TrialPruned()
        trial.set_user_attr("fold_scores", scores)
        trial.set_user_attr("fit_seconds", round(time.perf_counter() - started, 4))
        # CPU seconds vs wall seconds tells a slow trial from a starved one (busy machine).
        trial.set_user_attr("cpu_seconds", round(time.process_time() - cpu0, 4))
        return float(np.mean(scores))

    return objective


def load_xy(
    cfg: Config, split: Literal["train", "validation", "holdout"]
) -> tuple[pd.DataFrame, np.ndarray]:
    """Raw feature columns and the target of one split (the features stage's contract)."""
    from pipeline_components import features

    df = features.load_split(cfg, split)
    cols = list(features.feature_columns(cfg))
    return df[cols], df[cfg.data.target_column].to_numpy().astype(int)


START_BARRIER_S = 60.0


def wait_for_peers(folder: Path, worker_index: int, n_workers: int) -> bool:
    """A file barrier for local worker processes; True when all arrived before the timeout."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"ready-{worker_index}").touch()
    deadline = time.monotonic() + START_BARRIER_S
    while len(list(folder.glob("ready-*"))) < n_workers:
        if time.monotonic() > deadline:
            return False  # proceed alone rather than hang on a crashed peer
        time.sleep(0.05)
    return True


def optimize(
    cfg: Config,
    family: str,
    worker_index: int = 0,
    storage_url: str | None = None,
    on_trial: Callable[[], Any] | None = None,
    barrier: tuple[str, int] | None = None,
) -> int:
    """Run trials on the shared study until it has ``training.n_trials`` finished trials.

    ``barrier`` = (folder, n_workers): wait (at most ``START_BARRIER_S``) until every local worker
    has loaded its data before the first trial, so a worker that started late on a busy machine
    still gets its share of the budget instead of finding it spent.

    Returns:
        The trial budget this worker started with (0: the study was already complete).
    """
    from threadpoolctl import threadpool_limits

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    x, y = load_xy(cfg, "train")
    storage = open_storage(storage_url or storage_spec(cfg, family))
    study = optuna.load_study(
        study_name=study_name(cfg, family),
        storage=storage,
        sampler=_sampler(cfg, worker_index),
        pruner=_pruner(cfg),
    )
    if barrier is not None:
        wait_for_peers(Path(barrier[0]), worker_index, barrier[1])
    remaining = cfg.training.n_trials - finished_trials(study)
    if remaining <= 0:
        return 0
    callbacks: list[Callable[[optuna.Study, FrozenTrial], None]] = [
        MaxTrialsCallback(cfg.training.n_trials, states=FINISHED)
    ]
    if on_trial is not None:
        callbacks.append(lambda _study, _trial: on_trial())
    with threadpool_limits(limits=1):
        study.optimize(
            make_objective(cfg, family, x, y, worker_index),
            n_trials=remaining,
            timeout=cfg.training.timeout_s,
            callbacks=callbacks,
            catch=(Exception,),  # a failing trial is recorded, the worker goes on
            gc_after_trial=False,
        )
    return remaining
