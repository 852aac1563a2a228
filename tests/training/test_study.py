"""The train stage on a real Optuna storage and a real MLflow SQLite store."""

from __future__ import annotations

import socket
import uuid
from typing import Any

import optuna
import pytest
import sqlalchemy as sa
from mlflow import MlflowClient

from pipeline_components.errors import DataError, TrackingError
from pipeline_components.training import result_path, train_family
from pipeline_components.training import study as st

# Trials of about a second each, so two workers really overlap.
SLOW_SPACE = {"hist_gbdt": {
    "max_iter": {"type": "int", "low": 60, "high": 60},
    "learning_rate": {"type": "float", "low": 0.05, "high": 0.2, "log": True},
}}
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _child_runs(client: MlflowClient, run_id: str) -> list[Any]:
    exp_id = client.get_run(run_id).info.experiment_id
    return client.search_runs([exp_id], f"tags.mlflow.parentRunId = '{run_id}'")


def test_train_family_logs_study_trials_and_model(make_cfg: Any) -> None:
    cfg = make_cfg()
    res = train_family(cfg, "logreg")
    client = MlflowClient(cfg.tracking_uri)
    parent = client.get_run(res["run_id"])
    children = _child_runs(client, res["run_id"])
    # One nested run per trial, each with the trial's params, metric, duration and state.
    assert len(children) == sum(res["trials"].values()) >= 3
    for child in children:
        assert set(child.data.params) == {"C", "class_weight"}
        assert {"roc_auc", "duration_s"} <= set(child.data.metrics)
        assert child.data.tags["state"] == "COMPLETE"
    assert parent.data.tags["abx_study"] == res["study_name"] == "abx-local-logreg"
    assert {"holdout_roc_auc", "holdout_log_loss", "holdout_accuracy"} <= set(parent.data.metrics)
    assert res["model_uri"].startswith("models:/")
    assert 0.5 < res["holdout"]["roc_auc"] <= 1.0
    assert result_path(cfg, "logreg").is_file()
    assert res["storage"].endswith("experiments/local/optuna/logreg.journal")


def test_retry_resumes_instead_of_duplicating(make_cfg: Any) -> None:
    cfg = make_cfg()
    first = train_family(cfg, "logreg")
    again = train_family(cfg, "logreg")
    assert (again["run_id"], again["model_uri"]) == (first["run_id"], first["model_uri"])
    client = MlflowClient(cfg.tracking_uri)
    assert len(_child_runs(client, first["run_id"])) == sum(first["trials"].values())
    # A larger budget on retry runs only the missing trials, in the same study.
    more = train_family(make_cfg({"training.n_trials": 5}), "logreg")
    assert more["run_id"] == first["run_id"] and more["trials"]["complete"] >= 5


def test_same_seed_same_best_trial(make_cfg: Any) -> None:
    bests = []
    for eid in ("seed-a", "seed-b"):
        cfg = make_cfg({"experiment.id": eid, "training.n_trials": 4})
        study = st.create_study(cfg, "logreg")
        st.optimize(cfg, "logreg")
        bests.append((study.best_trial.number, study.best_trial.params, study.best_value))
    assert bests[0] == bests[1]


def _run_parallel(cfg: Any) -> optuna.Study:
    res = train_family(cfg, "hist_gbdt")
    study = optuna.load_study(study_name=res["study_name"],
                              storage=st.open_storage(st.storage_spec(cfg, "hist_gbdt")))
    # Both processes ran trials of the one shared study, within one exact shared budget.
    ran = [t for t in study.trials if not st.is_surplus(t)]
    assert {t.user_attrs["worker"] for t in ran} == {0, 1}
    assert st.finished_trials(study) == len(ran) == cfg.training.n_trials
    assert sum(res["trials"].values()) == cfg.training.n_trials
    return study


def test_the_budget_is_exact_when_two_workers_ask_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # n_trials 3 must run 3 trials: a worker that asks in the same instant as a peer taking the
    # last slot steps back instead of running a 4th trial.
    study = optuna.create_study(direction="maximize")
    study.tell(study.ask(), 0.5)
    peer = study.ask()  # a second worker is running trial 1
    real_ask = study.ask

    def racing_ask() -> optuna.Trial:  # a third worker's ask lands between count and ask
        monkeypatch.setattr(study, "ask", real_ask)
        real_ask()
        return real_ask()

    monkeypatch.setattr(study, "ask", racing_ask)
    assert st.next_trial(study, budget=3) is None
    surplus = study.trials[-1]
    assert st.is_surplus(surplus) and surplus.state == optuna.trial.TrialState.FAIL
    study.tell(peer, 0.6)
    assert st.next_trial(study, budget=3) is None  # 3 claimed: complete, complete, running
    assert len([t for t in study.trials if not st.is_surplus(t)]) == 3


def test_run_trials_stops_at_the_budget_and_frees_stale_slots() -> None:
    study = optuna.create_study(direction="maximize")
    study.ask()  # left RUNNING by a killed worker
    assert st.fail_stale_trials(study) == 1
    assert st.run_trials(study, lambda t: t.suggest_float("x", 0, 1), 3, 60.0) == 3
    assert st.finished_trials(study) == 3 and st.run_trials(study, lambda t: 1.0, 3, 60.0) == 0


def test_a_family_whose_trials_all_fail_stops_at_the_budget() -> None:
    def broken(trial: optuna.Trial) -> float:
        raise RuntimeError("estimator rejects the data")

    study = optuna.create_study(direction="maximize")
    assert st.run_trials(study, broken, 3, 60.0) == 3  # not until the timeout
    assert [t.user_attrs["fail_reason"] for t in study.trials] == [
        "RuntimeError: estimator rejects the data"] * 3


@pytest.mark.slow
def test_two_processes_share_a_journal_file_study(make_cfg: Any) -> None:
    cfg = make_cfg({"training.workers": 2, "training.n_trials": 8,
                    "training.search_spaces": SLOW_SPACE})
    _run_parallel(cfg)
    assert (cfg.experiment_dir / "optuna" / "hist_gbdt.journal").stat().st_size > 0


def _postgres_url() -> str:
    schema = "abx_optuna_test"
    try:
        engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.begin() as conn:
            conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {schema}"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure means "no server here"
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}: {exc}")
    # A private schema keeps Optuna's tables away from other users of the test database.
    return f"{PG_URL}?options=-csearch_path%3D{schema}"


@pytest.mark.postgres
@pytest.mark.slow
def test_two_processes_share_a_postgres_study(make_cfg: Any) -> None:
    url = _postgres_url()
    cfg = make_cfg({"training.workers": 2, "training.n_trials": 8, "training.storage": url,
                    "experiment.id": f"pg-{uuid.uuid4().hex[:10]}",
                    "training.search_spaces": SLOW_SPACE})
    try:
        _run_parallel(cfg)
    finally:
        optuna.delete_study(study_name=st.study_name(cfg, "hist_gbdt"), storage=url)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("kind", ["http", "sqlite"])
def test_unreachable_tracking_uri_fails_before_anything_is_written(
    make_cfg: Any, tmp_path: Any, kind: str
) -> None:
    uri = (f"http://127.0.0.1:{_free_port()}" if kind == "http"
           else f"sqlite:///{tmp_path}/missing/dir/mlflow.db")
    cfg = make_cfg({"tracking.tracking_uri": uri})
    with pytest.raises(TrackingError, match=uri.replace(".", r"\.")):
        train_family(cfg, "logreg")
    assert not cfg.experiment_dir.exists()  # no study, no journal, no result file


def test_missing_features_is_a_data_error(make_cfg: Any, tmp_path: Any) -> None:
    cfg = make_cfg({"features.out_dir": str(tmp_path / "nowhere")})
    with pytest.raises(DataError, match="nowhere/train.parquet"):
        train_family(cfg, "logreg")
    assert not cfg.experiment_dir.exists()


def test_start_barrier_waits_for_every_local_worker(tmp_path: Any, monkeypatch: Any) -> None:
    import threading

    arrived: list[bool] = []
    threads = [threading.Thread(target=lambda i=i: arrived.append(
        st.wait_for_peers(tmp_path / "b", i, 2))) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert arrived == [True, True]
    # A peer that never arrives (crashed) does not hang the others: they go on alone.
    monkeypatch.setattr(st, "START_BARRIER_S", 0.2)
    assert st.wait_for_peers(tmp_path / "lonely", 0, 2) is False
