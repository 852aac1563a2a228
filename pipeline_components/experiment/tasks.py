"""One entry point per DAG task: ``fn(conf, ...) -> small JSON``, shared by Airflow and ``abx run``.

Each function rebuilds the run's Config from the conf (see ``experiment.config``), makes the one
component call of its stage, stores its result under the experiment folder and returns a small
dict of ids, versions, paths and flags. Keyed by experiment id, so a retry is harmless: finished
steps that have side effects (deploy, canary, promote, rollback) return their stored result.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from pipeline_components.experiment.config import config_for
from pipeline_components.experiment.state import read_state, write_state

Conf = Mapping[str, Any]
F = TypeVar("F", bound=Callable[..., Any])
_QUIET = (dict, list, tuple)


def announced(fn: F) -> F:
    """Print ``[abx] step (seconds): summary`` per finished step: progress in any driver's log,
    and the task-body time that the Airflow-overhead figure (docs/experiment.md) is based on."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        took = time.perf_counter() - t0
        if isinstance(out, Mapping):
            brief = {k: v for k, v in out.items() if not isinstance(v, _QUIET)}
            text = ", ".join(f"{k}={v}" for k, v in brief.items())
        else:
            text = str(out)
        print(f"[abx] {fn.__name__} ({took:.2f} s): {text[:300]}", file=sys.stdout, flush=True)
        return out

    return wrapper  # type: ignore[return-value]


@announced
def data(conf: Conf) -> dict[str, Any]:
    from pipeline_components.data import run_data

    return run_data(config_for(conf))


@announced
def validate(conf: Conf) -> dict[str, Any]:
    from pipeline_components.validate import run_validate

    return run_validate(config_for(conf))


@announced
def features(conf: Conf) -> dict[str, Any]:
    from pipeline_components.features import run_features

    return run_features(config_for(conf))


@announced
def families(conf: Conf) -> list[str]:
    return list(config_for(conf).training.families)


@announced
def train(conf: Conf, family: str) -> dict[str, Any]:
    from pipeline_components.training.runner import train_family_isolated

    return train_family_isolated(config_for(conf), family)


@announced
def register(conf: Conf, results: Iterable[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    from pipeline_components.registry import register_best

    cfg = config_for(conf)
    stored = read_state(cfg, "register")
    if stored is not None:  # a re-run after promotion must not move the challenger alias again
        return stored
    out = register_best(cfg, [dict(r) for r in results] if results is not None else None)
    write_state(cfg, "register", out)
    return out


@announced
def gate(conf: Conf, registered: Mapping[str, Any]) -> dict[str, Any]:
    """Offline gate; its result names the champion this experiment is compared with (the CAS)."""
    from pipeline_components.gate import offline_gate

    cfg = config_for(conf)
    stored = read_state(cfg, "gate")
    if stored is not None:  # the champion it saw is the check-and-set reference: keep it
        return stored
    res = dict(offline_gate(cfg))
    out = {**res, "passed": bool(res.get("passed")), "champion": res.get("champion_version"),
           "challenger": res.get("challenger_version") or registered.get("version")}
    write_state(cfg, "gate", out)
    return out


def route_after_gate(gate_result: Mapping[str, Any]) -> str:
    """Branch: a canary only for a challenger that passed the offline gate."""
    return "deploy_canary" if gate_result.get("passed") else "no_canary"


@announced
def no_canary(conf: Conf, gate_result: Mapping[str, Any]) -> dict[str, Any]:
    """End without a canary: bootstrap (nothing to compare) or the gate said no.

    Stores an empty canary and a decision naming why (``BOOTSTRAP`` or ``OFFLINE_GATE``), so the
    report says it and every driver leaves the same files (``dvc repro`` tracks them).
    """
    from pipeline_components.experiment.promotion import rollback

    cfg = config_for(conf)
    out: dict[str, Any] = {"action": "none", "reason": gate_result.get("reason")}
    code = "BOOTSTRAP" if gate_result.get("bootstrap") else "OFFLINE_GATE"
    reasons = [{"code": code, "message": str(gate_result.get("reason")), "blocking": True}]
    if not gate_result.get("bootstrap") and gate_result.get("challenger"):
        out["rollback"] = rollback(cfg, gate_result["challenger"], reasons=reasons)
    write_state(cfg, "canary", {"finished": True, "steps": [], "stopped": "no_canary",
                                "decision": None})
    write_state(cfg, "decision", {"action": "none", "reasons": reasons})
    write_state(cfg, "outcome", out)
    return out


@announced
def deploy(conf: Conf) -> dict[str, Any]:
    """Attach the experiment to the endpoint: challenger loaded on every replica at weight 0."""
    from pipeline_components.experiment.attach import attach

    return attach(config_for(conf))


@announced
def canary(conf: Conf, deployment: Mapping[str, Any]) -> dict[str, Any]:
    """The whole ramp in one call (``abx run``, ``dvc repro``): polls until it is over."""
    from pipeline_components.experiment.live_canary import run

    return _canary_summary(run(config_for(conf), dict(deployment)))


def canary_poke(conf: Conf, deployment: Mapping[str, Any]) -> dict[str, Any] | None:
    """One poll of the canary (the Airflow sensor's body): its summary when over, else None."""
    from pipeline_components.experiment.live_canary import poke

    res = poke(config_for(conf), dict(deployment))
    if res is None:
        return None
    out = _canary_summary(res)
    print(f"[abx] canary: {out['stopped']} after {out['looks']} look(s) -> "
          f"{(out['decision'] or {}).get('action')}", flush=True)
    return out


def _canary_summary(res: Mapping[str, Any]) -> dict[str, Any]:
    return {"decision": res["decision"], "stopped": res.get("stopped"),
            "looks": len(res["steps"])}


@announced
def decide(conf: Conf, canary_result: Mapping[str, Any]) -> dict[str, Any]:
    cfg = config_for(conf)
    decision = dict(canary_result["decision"])
    write_state(cfg, "decision", decision)
    return decision


def route_decision(decision: Mapping[str, Any]) -> str:
    """Branch: promote only on an explicit promote decision; everything else keeps the champion."""
    return "promote" if decision.get("action") == "promote" else "rollback"


@announced
def promote(conf: Conf, decision: Mapping[str, Any], deployment: Mapping[str, Any]) -> dict:
    """Registry alias, then the endpoint's champion swapped in place.

    ``decision`` is what the caller passes (XCom, the CLI); it is not trusted:
    ``promotion.promote`` reads the decision this experiment stored and refuses without a promote
    decision, a passed gate and a version never rejected (locked compare-and-set, tags first).
    """
    from pipeline_components.experiment.attach import promote_on_endpoint
    from pipeline_components.experiment.promotion import promote as do_promote

    cfg = config_for(conf)
    out = do_promote(cfg).to_dict()
    if deployment.get("endpoint"):
        out["endpoint"] = promote_on_endpoint(cfg)
    write_state(cfg, "outcome", out)
    return out


@announced
def rollback(conf: Conf, decision: Mapping[str, Any], deployment: Mapping[str, Any]) -> dict:
    """Registry: challenger rejected (champion untouched); endpoint: challenger unloaded."""
    from pipeline_components.experiment.attach import reject_on_endpoint
    from pipeline_components.experiment.promotion import reasons_text
    from pipeline_components.experiment.promotion import rollback as do_rollback

    cfg = config_for(conf)
    g = read_state(cfg, "gate") or {}
    reasons = decision.get("reasons", [])
    out = do_rollback(cfg, g.get("challenger"), reasons=reasons)
    if deployment.get("endpoint"):
        out["endpoint"] = reject_on_endpoint(cfg, reasons_text(reasons) or "rollback")
    write_state(cfg, "outcome", out)
    return out


@announced
def cleanup(conf: Conf, deployment: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Teardown: detach from the endpoint (stop it only if this experiment started it)."""
    from pipeline_components.experiment.cleanup import cleanup as do_cleanup

    return do_cleanup(config_for(conf), deployment)


@announced
def report(conf: Conf) -> dict[str, Any]:
    from pipeline_components.experiment.report import build_report

    return build_report(config_for(conf))
