"""The champion gate: score challenger and champion on the same holdout before any canary.

``offline_gate`` runs after ``register_best`` (``registry.py``): it finds this experiment's
version, refuses when the champion trained on part of the holdout (``leakage.py``), scores both
models on the holdout, applies ``gate_verdict`` (a pure rule, known-answer tested) and records
the verdict on the version (tags), in one ``gate`` run per experiment id, and in
``<experiment_dir>/gate.json``. A retry returns the stored verdict that started the canary.
"""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Any

from pipeline_components.aliases import CHAMPION, alias_version, call
from pipeline_components.config import Config
from pipeline_components.errors import RegistryError
from pipeline_components.fileio import write_json
from pipeline_components.registry import concluded, find_version
from pipeline_components.tracking import configure_mlflow, experiment_id

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["gate_verdict", "offline_gate"]


def gate_verdict(metric: str, challenger: float, champion: float, margin: float) -> dict[str, Any]:
    """Pure rule: the challenger must beat the champion by more than ``margin``.

    ``improvement`` is oriented so that positive is better (log loss is lower-is-better). A
    negative margin turns the gate into a non-inferiority check.
    """
    improvement = champion - challenger if metric == "log_loss" else challenger - champion
    passed = improvement > margin + 1e-12  # 0.80 - 0.78 must not "beat" a 0.02 margin
    verb = "beats" if passed else "does not beat"
    reason = (f"challenger {verb} champion on holdout {metric}: {challenger:.4f} vs "
              f"{champion:.4f} (improvement {improvement:+.4f}, margin {margin})")
    if not passed:
        reason = "no candidate worth a canary: " + reason
    return {"passed": passed, "reason": reason, "improvement": improvement}


def _score(cfg: Config, name: str, version: str) -> float:
    import mlflow

    from pipeline_components.training.mlflow_runs import holdout_metrics

    model = mlflow.sklearn.load_model(f"models:/{name}/{version}")
    return holdout_metrics(model, cfg)[cfg.registry.gate_metric]


def _record_gate(client: MlflowClient, cfg: Config, version: str, res: dict[str, Any]) -> None:
    """Tags on the challenger version plus one ``gate`` run per experiment id (found on retry)."""
    name = cfg.registry.model_name
    tags = {"gate_passed": str(res["passed"]).lower(), "gate_reason": res["reason"],
            "gate_metric": res["metric"], "gate_margin": str(res["margin"]),
            "gate_champion_version": str(res["champion_version"])}
    for k, v in tags.items():
        call(cfg, f"recording the gate on v{version} of {name!r}",
             functools.partial(client.set_model_version_tag, name, version, k, v))
    exp_id = experiment_id(client, cfg)
    flt = f"tags.abx_role = 'gate' and tags.abx_experiment_id = '{cfg.experiment.id}'"
    runs = client.search_runs([exp_id], filter_string=flt, max_results=1)
    if runs:
        run_id = runs[0].info.run_id
    else:
        run_id = client.create_run(exp_id, run_name=f"gate-{cfg.experiment.id}", tags={
            "abx_role": "gate", "abx_experiment_id": cfg.experiment.id}).info.run_id
        for key in ("challenger_score", "champion_score", "improvement"):
            if res.get(key) is not None:
                client.log_metric(run_id, key, float(res[key]))
        client.set_terminated(run_id, "FINISHED")
    for k, v in {**tags, "challenger_version": version}.items():
        client.set_tag(run_id, k, v)
    res["gate_run_id"] = run_id


def _leaky(cfg: Config, client: MlflowClient, champion: str, res: dict[str, Any]) -> bool:
    """Record the holdout-overlap check in ``res``; True (gate refused) when there is overlap."""
    from pipeline_components.leakage import holdout_overlap, overlap_reason

    check = holdout_overlap(cfg, client, champion)
    res["holdout_overlap"] = check
    if not check["overlap"]:
        return False
    res.update(passed=False, challenger_score=None, champion_score=None, improvement=None,
               reason="no candidate worth a canary: " + overlap_reason(check))
    return True


def offline_gate(cfg: Config) -> dict[str, Any]:
    """Challenger vs champion on the same holdout; the verdict decides whether a canary starts.

    Returns:
        ``{"passed", "reason", "metric", "margin", "challenger_version", "champion_version",
        "challenger_score", "champion_score", "improvement", "bootstrap", "gate_run_id"}``, also
        written to ``<experiment_dir>/gate.json``. On bootstrap (the challenger *is* the champion)
        the gate does not pass: there is nothing to compare, so no canary.

    Raises:
        RegistryError: this experiment id has no registered version, or there is no champion.
    """
    client = configure_mlflow(cfg)
    name = cfg.registry.model_name
    mv = find_version(cfg, client)
    champion = alias_version(cfg, client, CHAMPION)
    if mv is None:
        raise RegistryError(f"registered model {name!r}: no version for experiment id "
                            f"{cfg.experiment.id!r}; run `abx register`")
    if champion is None:
        raise RegistryError(
            f"registered model {name!r} has no {CHAMPION!r} alias, and only a model that did not "
            "exist yet is bootstrapped: re-run the experiment that registered its first version, "
            f"or set the alias yourself (MlflowClient().set_registered_model_alias({name!r}, "
            f"{CHAMPION!r}, VERSION))")
    stored = cfg.experiment_dir / "gate.json"
    if concluded(mv.tags, cfg.experiment.id) and stored.is_file():
        return dict(json.loads(stored.read_text()))  # the verdict that started the canary
    version, metric = str(mv.version), cfg.registry.gate_metric
    res: dict[str, Any] = {"metric": metric, "margin": cfg.registry.gate_margin,
                           "challenger_version": version, "champion_version": champion,
                           "experiment_id": cfg.experiment.id, "bootstrap": champion == version}
    if champion == version:
        res.update(passed=False, challenger_score=None, champion_score=None, improvement=None,
                   reason=f"bootstrap: version {version} is already the champion; "
                          "no candidate worth a canary")
    elif _leaky(cfg, client, champion, res):
        pass  # refused: the champion trained on part of this holdout (res says so)
    else:
        chal, champ = _score(cfg, name, version), _score(cfg, name, champion)
        res.update(challenger_score=chal, champion_score=champ,
                   **gate_verdict(metric, chal, champ, cfg.registry.gate_margin))
    _record_gate(client, cfg, version, res)
    write_json(cfg.experiment_dir / "gate.json", res)
    return res
