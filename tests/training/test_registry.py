"""Registration, aliases, bootstrap, idempotency and the offline gate on a real MLflow store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient

from pipeline_components import features, registry
from pipeline_components.config import Config, load_config
from pipeline_components.errors import RegistryError
from pipeline_components.gate import gate_verdict, offline_gate
from pipeline_components.registry import register_best
from pipeline_components.training import train_family

REPO = Path(__file__).resolve().parents[2]
NAME = "abx-test-model"
LINEAGE = {"experiment_id", "data_version", "params_hash", "git_commit", "family",
           "optuna_study", "optuna_trial", "cv_metric", "cv_value", "run_id"}


# exp1's champion sees one weak feature only, so exp2 is a real improvement on any split
# (on 1.4k training users boosting does not reliably beat a linear model on all features).
WEAK_CHAMPION = {"data.numeric_features": ["x5"], "data.synthetic.n_numeric": 1}


@pytest.fixture(scope="module")
def store(data_overrides: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two experiments in one registry: exp1 (logreg, registered first) and exp2 (hist_gbdt)."""
    state = tmp_path_factory.mktemp("registry-state")
    cfgs: dict[str, Config] = {}
    out: dict[str, Any] = {"cfg": cfgs}
    for eid, family in (("exp1", "logreg"), ("exp2", "hist_gbdt")):
        cfgs[eid] = load_config(REPO / "params.yaml", {
            **data_overrides, "experiment.state_dir": str(state), "experiment.id": eid,
            "training.families": [family], "training.n_trials": 3, "training.cv_folds": 2,
            "training.workers": 1, "registry.model_name": NAME,
            **(WEAK_CHAMPION if eid == "exp1" else {})})
        out[f"train_{eid}"] = train_family(cfgs[eid], family)
        out[f"reg_{eid}"] = register_best(cfgs[eid])
    out["client"] = MlflowClient(cfgs["exp1"].tracking_uri)
    return out


def test_first_registration_bootstraps_champion(store: dict) -> None:
    r1, client = store["reg_exp1"], store["client"]
    assert (r1["version"], r1["bootstrap"], r1["reused"]) == ("1", True, False)
    mv = client.get_model_version(NAME, "1")
    assert LINEAGE <= set(mv.tags)
    assert mv.tags["experiment_id"] == "exp1" and mv.tags["family"] == "logreg"
    assert mv.tags["optuna_study"] == "abx-exp1-logreg"
    assert mv.tags["optuna_trial"] == str(store["train_exp1"]["best_trial"])
    assert mv.tags["params_hash"] == store["cfg"]["exp1"].params_hash()
    assert mv.tags["data_version"] == features.read_meta(store["cfg"]["exp1"])["data_version"][
        "sha256"]
    assert mv.tags["bootstrap"] == "true"


def test_later_experiment_becomes_challenger_only(store: dict) -> None:
    r2, client = store["reg_exp2"], store["client"]
    assert (r2["version"], r2["bootstrap"], r2["champion_version"]) == ("2", False, "1")
    assert str(client.get_model_version_by_alias(NAME, "challenger").version) == "2"
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "1"
    assert registry.get_alias_version(store["cfg"]["exp2"], "champion") == "1"


def test_reregistration_returns_the_same_version(store: dict) -> None:
    again = register_best(store["cfg"]["exp2"])
    assert (again["version"], again["reused"]) == ("2", True)
    assert len(store["client"].search_model_versions(f"name = '{NAME}'")) == 2


def test_crash_between_register_and_alias_is_safe_to_rerun(store: dict) -> None:
    client = store["client"]
    client.delete_registered_model_alias(NAME, "challenger")  # as if we died before the alias
    res = register_best(store["cfg"]["exp2"])
    assert res["version"] == "2" and res["reused"]
    assert str(client.get_model_version_by_alias(NAME, "challenger").version) == "2"
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "1"


def test_pyfunc_challenger_predicts_on_raw_feature_rows(store: dict) -> None:
    cfg = store["cfg"]["exp2"]
    uri = registry.load_model_uri(cfg, "challenger")
    assert uri == f"models:/{NAME}@challenger"
    rows = features.load_split(cfg, "holdout")[features.feature_columns(cfg)].head(7)
    preds = mlflow.pyfunc.load_model(uri).predict(rows)
    assert len(preds) == 7 and set(map(int, preds)) <= {0, 1}
    proba = mlflow.sklearn.load_model(uri).predict_proba(rows)[:, 1]
    assert ((proba > 0) & (proba < 1)).all()


def test_gate_passes_when_the_challenger_is_better(store: dict) -> None:
    # hist_gbdt (exp2) vs logreg (exp1) on a target with interactions: a real improvement.
    res = offline_gate(store["cfg"]["exp2"])
    assert res["passed"] and res["improvement"] > 0, res["reason"]
    assert res["challenger_score"] == pytest.approx(store["train_exp2"]["holdout"]["roc_auc"])
    assert res["champion_score"] == pytest.approx(store["train_exp1"]["holdout"]["roc_auc"])
    tags = store["client"].get_model_version(NAME, "2").tags
    assert tags["gate_passed"] == "true" and tags["gate_champion_version"] == "1"
    saved = json.loads((store["cfg"]["exp2"].experiment_dir / "gate.json").read_text())
    assert saved["passed"] is True


def test_gate_fails_when_the_margin_is_not_met(store: dict) -> None:
    cfg = store["cfg"]["exp2"].model_copy(update={"registry": store["cfg"]["exp2"].registry
                                                  .model_copy(update={"gate_margin": 0.5})})
    res = offline_gate(cfg)
    assert not res["passed"] and res["reason"].startswith("no candidate worth a canary")
    run = store["client"].get_run(res["gate_run_id"])
    assert run.data.tags["gate_passed"] == "false"
    assert store["client"].get_model_version(NAME, "2").tags["gate_passed"] == "false"


def test_gate_on_bootstrap_has_nothing_to_compare(store: dict) -> None:
    register_best(store["cfg"]["exp1"])  # challenger back to version 1 == champion
    res = offline_gate(store["cfg"]["exp1"])
    assert not res["passed"] and res["bootstrap"] and "bootstrap" in res["reason"]
    register_best(store["cfg"]["exp2"])


def test_bootstrap_survives_a_crash_before_any_alias(make_cfg: Any) -> None:
    cfg = make_cfg({"experiment.id": "crash"})
    train_family(cfg, "logreg")
    client = registry.configure_mlflow(cfg)
    version = registry._create_version(client, cfg, None, bootstrap=True)  # then "crashed"
    res = register_best(cfg)
    assert (res["version"], res["bootstrap"], res["reused"]) == (version, True, True)
    champion = client.get_model_version_by_alias(cfg.registry.model_name, "champion")
    assert str(champion.version) == version


def test_register_without_training_names_the_missing_file(make_cfg: Any) -> None:
    cfg = make_cfg({"experiment.id": "never-trained"})
    with pytest.raises(RegistryError, match=r"never-trained/training/logreg\.json"):
        register_best(cfg)


@pytest.mark.parametrize(
    ("metric", "chal", "champ", "margin", "passed", "improvement"),
    [
        ("roc_auc", 0.80, 0.78, 0.0, True, 0.02),
        ("roc_auc", 0.80, 0.78, 0.02, False, 0.02),  # must beat by *more* than the margin
        ("roc_auc", 0.78, 0.80, 0.0, False, -0.02),
        ("roc_auc", 0.79, 0.80, -0.02, True, -0.01),  # negative margin: non-inferiority
        ("log_loss", 0.40, 0.45, 0.0, True, 0.05),  # lower is better
        ("log_loss", 0.45, 0.40, 0.0, False, -0.05),
        ("accuracy", 0.9, 0.9, 0.0, False, 0.0),
    ],
)
def test_gate_verdict_known_answers(metric: str, chal: float, champ: float, margin: float,
                                    passed: bool, improvement: float) -> None:
    res = gate_verdict(metric, chal, champ, margin)
    assert res["passed"] is passed
    assert res["improvement"] == pytest.approx(improvement, abs=1e-12)
    assert res["reason"].startswith("challenger") is passed


def test_rerunning_a_concluded_experiment_changes_no_alias(make_cfg: Any) -> None:
    # After a promotion (or a rollback) the experiment is over: re-running its register and gate
    # stages (an Airflow retry, a second `dvc repro`) must leave every alias where it is.
    from pipeline_components.experiment.promotion import promote, rollback
    from pipeline_components.experiment.state import write_state

    cfgs = {eid: make_cfg({"experiment.id": eid, "registry.gate_margin": -1.0})
            for eid in ("boot", "win", "lose")}  # margin -1: the gate passes (non-inferiority)
    for cfg in cfgs.values():
        train_family(cfg, "logreg")
    client = registry.configure_mlflow(cfgs["boot"])
    register_best(cfgs["boot"])
    win = register_best(cfgs["win"])["version"]
    gate = offline_gate(cfgs["win"])
    assert gate["passed"]
    write_state(cfgs["win"], "decision", {"action": "promote", "reasons": ["test"]})
    promote(cfgs["win"])
    assert registry.get_alias_version(cfgs["win"], "champion") == win
    assert registry.get_alias_version(cfgs["win"], "challenger") is None
    again = register_best(cfgs["win"])
    assert again["version"] == win and again["reused"]
    assert registry.get_alias_version(cfgs["win"], "challenger") is None
    assert offline_gate(cfgs["win"]) == gate  # the stored verdict, not a "bootstrap" re-score

    lose = register_best(cfgs["lose"])["version"]
    rollback(cfgs["lose"], lose, reasons=["test"])
    register_best(cfgs["lose"])
    assert registry.get_alias_version(cfgs["lose"], "challenger") is None
    assert registry.get_alias_version(cfgs["lose"], "champion") == win
    assert len(client.search_model_versions("name = 'abx-test-model'")) == 3


def test_the_gate_is_still_importable_from_the_registry() -> None:
    # callers written before the gate moved to its own module keep working
    from pipeline_components import gate, registry

    assert registry.offline_gate is gate.offline_gate
    assert registry.gate_verdict is gate.gate_verdict
