"""Model registry: register the winning candidate with its lineage and move the aliases.

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
The champion gate (``offline_gate``: challenger vs champion on the same holdout) lives in
``pipeline_components.gate``.
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
from pipeline_components.tracking import configure_mlflow

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

__all__ = ["CHALLENGER", "CHAMPION", "concluded", "find_version", "get_alias_version",
           "load_model_uri", "register_best"]


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


def __getattr__(name: str) -> Any:
    """``offline_gate`` and ``gate_verdict`` moved to ``pipeline_components.gate``; imported
    lazily so the old import path keeps working without an import cycle (gate imports us)."""
    if name in ("offline_gate", "gate_verdict"):
        from pipeline_components import gate

        return getattr(gate, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
