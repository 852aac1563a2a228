"""Model registry: register the winning candidate with lineage, aliases, and the offline gate.

``register_best`` turns the best family's refit model into a new version of
``registry.model_name``, tagged with its whole lineage, and points the ``challenger`` alias at it.

**Bootstrap is explicit**: only when the registry answers "not found" (``RESOURCE_DOES_NOT_EXIST``)
for the registered model, or the model has no version at all, is the new version created with the
tag ``bootstrap=true`` (in the same call that creates it) and made champion. An error from the
registry is never read as "no model": it fails the step with a retryable
``RegistryUnavailableError`` and moves nothing.

Registration is idempotent per experiment id: the version is found by its ``experiment_id`` tag
(set atomically with the version), so an Airflow retry, or a rerun after a crash between
"register" and "alias", returns the same version and only finishes the alias moves. Alias moves
go through ``pipeline_components.aliases`` (database lock + compare-and-set, tags first).
``offline_gate`` scores challenger and champion on the same holdout and records the verdict on the
version (tags) and in a ``gate`` run.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline_components.aliases import (
    CHALLENGER,
    CHAMPION,
    alias_lock,
    alias_version,
    call,
    model_aliases,
    move_alias,
)
from pipeline_components.config import Config
from pipeline_components.errors import RegistryError
from pipeline_components.fileio import write_json
from pipeline_components.tracking import configure_mlflow, experiment_id

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

__all__ = ["CHALLENGER", "CHAMPION", "concluded", "find_version", "gate_verdict",
           "get_alias_version", "load_model_uri", "offline_gate", "register_best"]


def git_commit() -> str:
    """The commit of the running code (``ABX_GIT_COMMIT`` wins, e.g. in a container) or unknown."""
    if os.environ.get("ABX_GIT_COMMIT"):
        return os.environ["ABX_GIT_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=True, cwd=Path(__file__).parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def pick_winner(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The family with the best cross-validated objective (every objective is maximised).

    Selection uses the CV value, not the holdout: the holdout stays an unbiased referee for the
    offline gate.
    """
    if not results:
        raise RegistryError("no training results to choose from; run `abx train` first")
    finished = [r for r in results if not r.get("failed")]
    if not finished:  # registration picks among the families that finished; none did
        why = "; ".join(f"{r['family']}: {r.get('error')}" for r in results)
        raise RegistryError(f"no model family finished training ({why})")
    return max(finished, key=lambda r: (r["best_value"], r["family"]))


def load_results(cfg: Config) -> list[dict[str, Any]]:
    """Read the per-family result files ``train`` wrote for this experiment id."""
    from pipeline_components.training.runner import result_path

    out = []
    for family in cfg.training.families:
        path = result_path(cfg, family)
        if not path.is_file():
            raise RegistryError(f"{path}: training result of family {family!r} not found; "
                                "run `abx train` for this experiment id first")
        out.append(json.loads(path.read_text()))
    return out


def lineage_tags(cfg: Config, winner: dict[str, Any]) -> dict[str, str]:
    """Everything needed to trace a version back to data, code, config, study and trial."""
    from pipeline_components import features

    dv = features.read_meta(cfg).get("data_version", {})
    tags = {
        "experiment_id": cfg.experiment.id,
        "data_version": str(dv.get("dvc_md5") or dv.get("sha256") or "unknown"),
        "data_sha256": str(dv.get("sha256", "unknown")),
        "params_hash": cfg.params_hash(),
        "git_commit": git_commit(),
        "family": winner["family"],
        "optuna_study": winner["study_name"],
        "optuna_trial": str(winner["best_trial"]),
        "cv_metric": winner["metric"],
        "cv_value": f"{winner['best_value']:.6f}",
        "run_id": winner["run_id"],
    }
    tags.update({f"holdout_{k}": f"{v:.6f}" for k, v in winner.get("holdout", {}).items()})
    return tags


def find_version(cfg: Config, client: MlflowClient) -> ModelVersion | None:
    """This experiment's version (found by its ``experiment_id`` tag), or None."""
    name, eid = cfg.registry.model_name, cfg.experiment.id
    found = call(cfg, f"searching {name!r} for experiment {eid!r}", lambda: client.
                 search_model_versions(f"name = '{name}' and tags.experiment_id = '{eid}'"))
    return min(found, key=lambda v: int(v.version)) if found else None


def get_alias_version(cfg: Config, alias: str) -> str | None:
    """The version an alias of ``registry.model_name`` points to, or None (strict: an outage
    raises ``RegistryUnavailableError``, it is never "no alias")."""
    return alias_version(cfg, configure_mlflow(cfg), alias)


def load_model_uri(cfg: Config, alias: str) -> str:
    """``models:/NAME@alias`` after checking the alias exists (RegistryError naming it if not)."""
    if get_alias_version(cfg, alias) is None:
        raise RegistryError(f"registered model {cfg.registry.model_name!r} has no alias "
                            f"{alias!r}; run `abx train` and `abx register` first")
    return f"models:/{cfg.registry.model_name}@{alias}"


def is_first_model(cfg: Config, client: MlflowClient) -> bool:
    """True only if the registry confirms there is nothing to protect yet: the registered model
    does not exist (``RESOURCE_DOES_NOT_EXIST``) or has no version at all."""
    name = cfg.registry.model_name
    if model_aliases(cfg, client) is None:
        return True
    return not call(cfg, f"listing versions of {name!r}",
                    lambda: client.search_model_versions(f"name = '{name}'", max_results=1))


def _create_version(client: MlflowClient, cfg: Config, results: list[dict] | None,
                    bootstrap: bool) -> str:
    """Register the winner; lineage (and the bootstrap intent) ride on the creating call."""
    import mlflow

    results = results if results is not None else load_results(cfg)
    stale = [r["family"] for r in results if r.get("experiment_id") != cfg.experiment.id]
    if stale:
        raise RegistryError(f"training results of {stale} belong to another experiment id, "
                            f"not {cfg.experiment.id!r}; rerun `abx train`")
    winner = pick_winner(results)
    tags = {**lineage_tags(cfg, winner), **({"bootstrap": "true"} if bootstrap else {})}
    name = cfg.registry.model_name

    def create() -> str:
        again = find_version(cfg, client)  # a lost answer to an earlier attempt created it
        if again is not None:
            return str(again.version)
        return str(mlflow.register_model(winner["model_uri"], name, tags=tags).version)

    return call(cfg, f"registering a version of {name!r}", create)


def concluded(tags: dict[str, str], experiment_id: str) -> bool:
    """True once this experiment promoted or rejected its version: re-running a stage must then
    change nothing (no challenger alias back on the new champion, no re-scored gate)."""
    return tags.get("abx.promoted_by") == experiment_id or tags.get("abx.rejected_by") == (
        experiment_id)


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _move_aliases(cfg: Config, client: MlflowClient, mv: ModelVersion) -> str | None:
    """Challenger -> this version; champion too on a bootstrap. Returns the champion after."""
    name, version, eid = cfg.registry.model_name, str(mv.version), cfg.experiment.id
    with alias_lock(cfg) as held:
        aliases = model_aliases(cfg, client) or {}
        if not concluded(mv.tags, eid):  # a finished experiment's aliases stay put
            move_alias(cfg, client, held, CHALLENGER, expected=aliases.get(CHALLENGER),
                       new=version)
        if mv.tags.get("bootstrap") == "true" and aliases.get(CHAMPION) is None:
            tags = {"abx.promoted_by": eid,
                    "abx.promoted_at": mv.tags.get("abx.promoted_at") or now_iso(),
                    "abx.promotion_reasons": "bootstrap: first version of a new model"}
            for key, value in tags.items():  # tags first, the alias last
                call(cfg, f"tagging v{version} of {name!r}", functools.partial(
                    client.set_model_version_tag, name, version, key, value))
            move_alias(cfg, client, held, CHAMPION, expected=None, new=version)
        return alias_version(cfg, client, CHAMPION)


def register_best(cfg: Config, results: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Register the winner (or find it again) and move ``challenger`` (and, on bootstrap, champion).

    Args:
        cfg: the config; ``experiment.id`` keys the registration.
        results: ``train_family`` results; None reads the files ``abx train`` wrote.

    Returns:
        ``{"model_name", "version", "model_uri", "family", "run_id", "bootstrap",
        "champion_version", "reused", "tags"}``; also written to ``<experiment_dir>/registry.json``.

    Raises:
        RegistryUnavailableError: the registry did not answer (retryable; nothing moved).
    """
    from pipeline_components.compiled import compile_version  # ONNX/treelite beside the model

    client = configure_mlflow(cfg)
    name = cfg.registry.model_name
    existing = find_version(cfg, client)
    if existing is None:
        _create_version(client, cfg, results, bootstrap=is_first_model(cfg, client))
    mv = existing or find_version(cfg, client)
    if mv is None:
        raise RegistryError(f"registered model {name!r}: the version just created for "
                            f"experiment {cfg.experiment.id!r} is not found")
    version = str(mv.version)
    # Tags on the version, so before any alias points at it; under the same outage policy.
    call(cfg, f"compiling v{version} of {name!r}", lambda: compile_version(cfg, version))
    champion = _move_aliases(cfg, client, mv)
    mv = call(cfg, f"reading v{version} of {name!r}",
              lambda: client.get_model_version(name, version))
    result = {
        "model_name": name, "version": version, "model_uri": f"models:/{name}/{version}",
        "family": mv.tags.get("family"), "run_id": mv.tags.get("run_id"),
        "bootstrap": mv.tags.get("bootstrap") == "true" and champion == version,
        "champion_version": champion, "reused": existing is not None,
        "experiment_id": cfg.experiment.id, "tags": dict(mv.tags),
    }
    write_json(cfg.experiment_dir / "registry.json", result)
    return result


# --------------------------------------------------------------------------- offline gate
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
