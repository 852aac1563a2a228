"""Promote or roll back a challenger: the champion moves only on a promote decision.

``promote(cfg)`` is the one entry point that moves the ``champion`` alias after a canary. It takes
no caller's word for anything; it reads what the experiment stored and what the registry holds:

1. **A promote decision for this experiment**: ``<experiment_dir>/run/decision.json`` (written by
   the ``decide`` step) must say ``promote``.
2. **A passed offline gate**: the version's ``gate_passed`` tag is ``true``; its
   ``gate_champion_version`` tag names the champion it was compared with.
3. **A version never rejected**: no ``abx.rejected=true`` tag (a rolled-back version).

Any of these failing raises ``PromotionRefusedError`` (exit code 11) naming every failed
condition; nothing moves. Then, under the model's database lock (``aliases.alias_lock``), the
champion alias is compared with the gate's champion (compare-and-set: if another experiment
promoted meanwhile, ``AliasConflictError``), the tags (decision, lineage of the move) are written
first and the alias moved last. A re-run (an Airflow retry, a re-run after a crash between tags and
alias) finds the same state and finishes the move or changes nothing.

The champion alias is never touched by a rollback.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from pipeline_components.aliases import (
    CHALLENGER,
    CHAMPION,
    alias_lock,
    alias_version,
    call,
    move_alias,
)
from pipeline_components.config import Config
from pipeline_components.errors import AliasConflictError, PromotionRefusedError

if TYPE_CHECKING:
    from mlflow import MlflowClient


@dataclass(frozen=True)
class PromotionResult:
    """What ``promote`` did: ``changed`` is False when the champion already was this version."""

    version: str
    champion_before: str | None
    champion_after: str
    changed: bool
    experiment_id: str
    action: str = "promote"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def reasons_text(reasons: Sequence[Any]) -> str:
    """Decision reasons as one line (``CODE: message; ...``), capped for an MLflow tag."""
    from pipeline_components.analysis.decision import reason_dicts

    parts = [f"{r['code']}: {r['message']}" for r in reason_dicts(reasons)]
    return "; ".join(parts)[:4900]  # MLflow tag values are capped at 5000 chars


def refusals(decision: Mapping[str, Any] | None, tags: Mapping[str, str], version: str,
             experiment_id: str) -> list[str]:
    """Every reason why this version may not become champion (empty: it may). Pure."""
    out = []
    if decision is None:
        out.append(f"experiment {experiment_id!r} has no stored decision (run `abx decide`)")
    elif decision.get("action") != "promote":
        why = reasons_text(decision.get("reasons", []))[:300]
        out.append(f"the stored decision of experiment {experiment_id!r} is "
                   f"{decision.get('action')!r}, not 'promote'" + (f" ({why})" if why else ""))
    if tags.get("gate_passed") != "true" or not tags.get("gate_champion_version"):
        passed, why = tags.get("gate_passed", "missing"), tags.get("gate_reason", "no gate run")
        out.append(f"v{version} did not pass the offline gate (gate_passed={passed}: {why})")
    if tags.get("abx.rejected") == "true":
        out.append(f"v{version} was rejected (rolled back) by experiment "
                   f"{tags.get('abx.rejected_by', '?')}: {tags.get('abx.rejected_reasons', '')}"
                   [:400] + "; a rejected version is never promoted")
    return out


def _tag_all(cfg: Config, client: MlflowClient, version: str, tags: Mapping[str, str]) -> None:
    name = cfg.registry.model_name
    for key, value in tags.items():
        call(cfg, f"tagging v{version} of {name!r} ({key})",
             functools.partial(client.set_model_version_tag, name, version, key, value))


def _version_tags(cfg: Config, client: MlflowClient, version: str) -> dict[str, str]:
    name = cfg.registry.model_name
    mv = call(cfg, f"reading v{version} of {name!r}",
              lambda: client.get_model_version(name, version))
    return dict(mv.tags or {})


def _for(cfg: Config, experiment_id: str | None) -> Config:
    if experiment_id is None or experiment_id == cfg.experiment.id:
        return cfg
    return cfg.model_copy(update={"experiment": cfg.experiment.model_copy(
        update={"id": experiment_id})})


def promote(cfg: Config, experiment_id: str | None = None) -> PromotionResult:
    """Make this experiment's challenger the champion, if and only if it earned it.

    Args:
        cfg: the config (tracking URI, model name, lock database).
        experiment_id: the experiment to promote (default ``cfg.experiment.id``).

    Raises:
        PromotionRefusedError: no promote decision, gate not passed, or a rejected version.
        AliasConflictError: the champion moved since the gate compared against it.
        RegistryUnavailableError: the registry did not answer (retryable; nothing moved).
        ExperimentLockedError: another promotion held the lock past ``canary.lock_timeout_s``.
    """
    from pipeline_components.experiment.state import read_state
    from pipeline_components.registry import find_version
    from pipeline_components.tracking import configure_mlflow

    cfg = _for(cfg, experiment_id)
    eid, name = cfg.experiment.id, cfg.registry.model_name
    client = configure_mlflow(cfg)
    mv = find_version(cfg, client)
    if mv is None:
        raise PromotionRefusedError(f"promotion refused: registered model {name!r} has no "
                                    f"version for experiment {eid!r}; run `abx register`")
    version, decision = str(mv.version), read_state(cfg, "decision")
    with alias_lock(cfg) as held:
        tags = _version_tags(cfg, client, version)
        current = alias_version(cfg, client, CHAMPION)
        expected = _check(cfg, decision, tags, version, current)
        if current == expected and current != version:  # tags first, alias last
            _tag_the_move(cfg, client, version, current, decision, tags)
        changed = move_alias(cfg, client, held, CHAMPION, expected=expected, new=version)
        if alias_version(cfg, client, CHALLENGER) == version:
            move_alias(cfg, client, held, CHALLENGER, expected=version, new=None)
    return PromotionResult(version=version, champion_before=current if changed else expected,
                           champion_after=version, changed=changed, experiment_id=eid)


def _check(cfg: Config, decision: Mapping[str, Any] | None, tags: Mapping[str, str],
           version: str, current: str | None) -> str:
    """Raise unless ``version`` may replace ``current``; returns the champion it was gated on."""
    eid, name = cfg.experiment.id, cfg.registry.model_name
    failed = refusals(decision, tags, version, eid)
    if failed:
        stays = f"v{current}" if current else "unset"
        raise PromotionRefusedError(f"promotion of {name!r} v{version} refused: "
                                    + "; ".join(failed) + f". The champion stays {stays}.")
    expected = tags["gate_champion_version"]
    if current not in (version, expected):
        raise AliasConflictError(
            f"registry: {name}@champion moved from v{expected} to v{current} during "
            f"experiment {eid}; refusing to promote v{version} over a champion it was not "
            "compared with (start a new experiment)")
    return expected


def _tag_the_move(cfg: Config, client: MlflowClient, version: str, current: str,
                  decision: Mapping[str, Any] | None, tags: Mapping[str, str]) -> None:
    """Decision and lineage of the move on both versions; timestamps kept on a re-run."""
    from pipeline_components.registry import now_iso

    eid = cfg.experiment.id
    why = reasons_text((decision or {}).get("reasons", [])) or "canary decision: promote"
    retired = _version_tags(cfg, client, current).get("abx.retired_at")
    _tag_all(cfg, client, current, {
        "abx.retired_at": retired or now_iso(),
        "abx.retired_reason": f"replaced by v{version} in experiment {eid}: {why}"[:4990]})
    _tag_all(cfg, client, version, {
        "abx.decision": "promote", "abx.promoted_by": eid,
        "abx.promoted_at": tags.get("abx.promoted_at") or now_iso(),
        "abx.promotion_reasons": why})


def rollback(cfg: Config, version: str | None, *, reasons: Sequence[Any] = ()) -> dict[str, Any]:
    """Reject ``version``: tag it rejected (first), then remove its ``challenger`` alias.

    Returns:
        ``{"action": "rollback", "changed", "version", "champion"}`` (champion is untouched).
    """
    from pipeline_components.registry import now_iso
    from pipeline_components.tracking import configure_mlflow

    why = reasons_text(reasons) or "canary decision: rollback"
    changed = False
    client = configure_mlflow(cfg)
    with alias_lock(cfg) as held:
        champion = alias_version(cfg, client, CHAMPION)
        if version is not None and version != champion:
            tags = _version_tags(cfg, client, version)
            if tags.get("abx.rejected") != "true":
                _tag_all(cfg, client, version, {
                    "abx.rejected": "true", "abx.decision": "rollback",
                    "abx.rejected_at": now_iso(), "abx.rejected_by": cfg.experiment.id,
                    "abx.rejected_reasons": why})
                changed = True
            if alias_version(cfg, client, CHALLENGER) == version:
                changed |= move_alias(cfg, client, held, CHALLENGER, expected=version, new=None)
    return {"action": "rollback", "changed": changed, "version": version, "champion": champion}
