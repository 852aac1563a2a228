"""One Optuna study per family: storage, sampler, pruner, the cross-validated objective, a worker.

Storage is chosen by config, never by code: ``training.storage: null`` means a
``JournalStorage(JournalFileBackend)`` file under ``<state_dir>/experiments/<id>/optuna/`` (several
processes on one machine, file-locked appends, no server), any other value is an RDB URL
(PostgreSQL when workers run on several machines). The parent creates the study; each worker
process loads it by name and asks for trials while the study as a whole holds fewer than
``n_trials`` finished or running trials, so N workers share one budget instead of running N
budgets, and the budget is exact: ``n_trials: 3`` is 3 trials, whatever the number of workers.
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
from optuna.trial import FrozenTrial, TrialState

from pipeline_components.config import Config
from pipeline_components.training import families
from pipeline_components.training.search_space import suggest

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
SURPLUS = "abx_surplus"  # user attr: asked in the same instant as a peer took the last slot


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


def is_surplus(trial: FrozenTrial) -> bool:
    """A trial that never ran: it lost the race for the last budget slot (see ``next_trial``)."""
    return bool(trial.user_attrs.get(SURPLUS))


def uses_budget(trial: FrozenTrial) -> bool:
    """Whether a trial holds a slot of ``n_trials``: finished, running, or failed after it ran.

    A failed trial that ran (its ``fail_reason`` is kept) counts, so a family whose every trial
    fails stops after ``n_trials``; a surplus trial or one a killed worker left behind does not.
    """
    if trial.state == TrialState.FAIL:
        return "fail_reason" in trial.user_attrs and not is_surplus(trial)
    return True


def _used(study: optuna.Study, before: int | None = None) -> int:
    trials = study.get_trials(deepcopy=False)
    return sum(uses_budget(t) for t in trials if before is None or t.number < before)


def fail_stale_trials(study: optuna.Study) -> int:
    """Mark trials left RUNNING by a killed worker as failed, so they give their slot back.

    Only the parent calls this, before it starts its workers: no trial of the study can be
    running then (a retry of the train task after a crash).
    """
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in stale:
        study.tell(t.number, state=TrialState.FAIL)
    return len(stale)


def next_trial(study: optuna.Study, budget: int) -> optuna.Trial | None:
    """A new trial while fewer than ``budget`` trials use the budget, else None.

    Counting then asking is not atomic across workers, so two can ask in the same instant for
    the last slot. Trial numbers are handed out in order by the storage: the one with ``budget``
    counted trials before it steps back (told FAIL and marked surplus, never run or logged).
    """
    if _used(study) >= budget:
        return None
    trial = study.ask()
    if _used(study, before=trial.number) < budget:
        return trial
    trial.set_user_attr(SURPLUS, True)
    study.tell(trial, state=TrialState.FAIL)
    return None


def run_trials(study: optuna.Study, objective: Callable[[optuna.Trial], float], budget: int,
               timeout_s: float, on_trial: Callable[[], Any] | None = None) -> int:
    """Ask-and-tell loop over :func:`next_trial`; returns how many trials this worker ran.

    Like ``study.optimize(catch=(Exception,))``: a pruned trial is told PRUNED, a failing trial
    is recorded FAIL (its reason kept in ``fail_reason``) and the worker goes on; an interrupt
    fails the trial and stops the worker.
    """
    deadline, ran = time.monotonic() + timeout_s, 0
    while time.monotonic() < deadline and (trial := next_trial(study, budget)) is not None:
        try:
            study.tell(trial, objective(trial))
        except optuna.TrialPruned:
            study.tell(trial, state=TrialState.PRUNED)
        except Exception as exc:  # kept on the trial: the family's failure names it
            if "fail_reason" not in trial.user_attrs:
                trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}"[:500])
            study.tell(trial, state=TrialState.FAIL)
        except BaseException:
            study.tell(trial, state=TrialState.FAIL)
            raise
        ran += 1
        if on_trial is not None:
            on_trial()
    return ran


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
    """Run trials on the shared study until ``training.n_trials`` of its trials use the budget.

    ``barrier`` = (folder, n_workers): wait (at most ``START_BARRIER_S``) until every local worker
    has loaded its data before the first trial, so a worker that started late on a busy machine
    still gets its share of the budget instead of finding it spent.

    Returns:
        How many trials this worker ran (0: the study was already complete).
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
    objective = make_objective(cfg, family, x, y, worker_index)
    with threadpool_limits(limits=1):
        return run_trials(study, objective, cfg.training.n_trials, cfg.training.timeout_s,
                          on_trial)
