"""The canary as a sequence of polls on a running endpoint (an Airflow sensor's ``poke``).

Each ``poke`` looks at the stored progress (``canary.json``) and the log, does at most one thing
and returns: the result when the canary is over, else None (the sensor frees its worker slot and
comes back after ``canary.poke_interval_s``). A step

1. starts: the challenger's weight is set on every replica (the control state), the step's start
   time recorded; with ``canary.traffic: simulator`` an ``abx simulate`` process is started;
2. waits: until the smaller arm has ``canary.min_samples_per_step`` units with an outcome since
   the step started and ``canary.min_step_duration_s`` passed (live), or the step's traffic process
   finished (simulator), or ``canary.max_step_duration_s`` passed;
3. is analysed (flush every replica's log first) and either ends the canary (breaker, promote,
   rollback, budget, last look) or starts the next step.

A breaker trip on any replica ends the canary at the next poll. Progress is saved after every
change, so a retried or rescheduled task resumes where the last one stopped.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from sqlalchemy import and_, func, or_, select

from pipeline_components.config import Config
from pipeline_components.experiment import traffic
from pipeline_components.experiment.canary import (
    analysis_inputs,
    final_decision,
    info_fractions,
    ramp,
    srm_weights,
    step_weights,
    stop_reason,
    weights_since,
)
from pipeline_components.experiment.simulate import requests_for_step
from pipeline_components.experiment.state import read_state, write_state
from pipeline_components.faults import canary_fault
from pipeline_components.serving import operations as ops


def step_samples(cfg: Config, since: float) -> dict[str, int]:
    """Units with an outcome per variant among the experiment's randomised rows since ``since``."""
    from pipeline_components.store import feedback, make_engine, predictions

    p, f = predictions, feedback
    q = (select(p.c.variant, func.count(func.distinct(p.c.unit_id)))
         .select_from(p.join(f, f.c.request_id == p.c.request_id))
         .where(and_(p.c.experiment_id == cfg.experiment.id, p.c.ts >= since, p.c.served,
                     or_(p.c.assignment.is_(None), p.c.assignment == "hash")))
         .group_by(p.c.variant))
    with make_engine(cfg.store_url).connect() as conn:
        return {v: int(n) for v, n in conn.execute(q)}


def flush_replicas(cfg: Config) -> None:
    """Ask every live replica to write its queued log rows now (admin ``/admin/flush``)."""
    from pipeline_components.serving.keys import endpoint_secret

    token = endpoint_secret(cfg, "admin_token")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    for rep in ops.live_replicas(cfg):
        try:
            httpx.post(f"{rep['url']}/admin/flush", headers=headers, timeout=30.0)
        except httpx.HTTPError:  # a replica that went away flushed on its way out
            pass


def _start_step(cfg: Config, st: dict[str, Any], deployment: dict[str, Any]) -> None:
    look = len(st["steps"]) + 1
    share = ramp(cfg)[look - 1]
    name, exp = cfg.endpoint.name, cfg.experiment.id
    control = ops.open_control(cfg)
    if look == 1:
        control.set_collecting(name, exp, True)
    weights = step_weights(share)
    try:
        ops.wait_applied(cfg, control.set_weights(name, weights, exp))
    except PermissionError:  # the breaker tripped meanwhile: the next poll ends the canary
        pass
    cur: dict[str, Any] = {"look": look, "share": share, "weights": weights,
                           "started_at": time.time()}
    if cfg.canary.traffic == "simulator":
        n = requests_for_step(share, cfg.canary.min_samples_per_step, cfg.simulator.max_requests)
        urls = [r["url"] for r in ops.live_replicas(cfg)]  # every replica, as they are now
        cur["traffic"] = traffic.spawn(cfg, urls or deployment.get("urls") or [deployment["url"]],
                                       st["offset"], n, look)
        st["offset"] += n
    st["current"] = cur


def _step_done(cfg: Config, cur: dict[str, Any], now: float) -> tuple[bool, Any]:
    """(done?, what the traffic source reported) for the running step."""
    elapsed = now - cur["started_at"]
    if elapsed >= cfg.canary.max_step_duration_s:
        return True, {"ended": "max_step_duration_s"}
    if "traffic" in cur:
        res = traffic.finished(cur["traffic"])
        return res is not None, res
    if elapsed < cfg.canary.min_step_duration_s:
        return False, None
    counts = step_samples(cfg, cur["started_at"])
    smaller = min(counts.get("champion", 0), counts.get("challenger", 0))
    return smaller >= cfg.canary.min_samples_per_step, {"samples": counts}


def _analyze_step(cfg: Config, st: dict[str, Any], traffic_result: Any) -> dict[str, Any]:
    from pipeline_components.analysis.run import analyze

    cur = st.pop("current")
    flush_replicas(cfg)
    inputs = analysis_inputs(cfg)
    inputs["previous_fractions"] = info_fractions(st["steps"])
    # each ramp step is a phase (post-stratified); SRM covers every step at the current weights
    inputs["phase_starts"] = [float(s["started_at"]) for s in st["steps"]] + [cur["started_at"]]
    since = weights_since(st["steps"], cur["share"]) or cur["started_at"]
    decision = analyze(cfg, expected_weights=srm_weights(cfg, cur["weights"]),
                       look=cur["look"], srm_since_ts=since,
                       max_looks=len(ramp(cfg)), **inputs).to_dict()
    snap = ops.open_control(cfg).snapshot(cfg.endpoint.name)
    breaker = {"tripped": snap.breaker_tripped, "reason": snap.breaker_reason}
    step = {**cur, "ended_at": time.time(), "simulation": traffic_result,
            "requests": (cur.get("traffic") or {}).get("n"), "breaker": breaker,
            "decision": decision}
    st["steps"].append(step)
    return step


def _finish(cfg: Config, st: dict[str, Any], stopped: str) -> dict[str, Any]:
    last = st["steps"][-1] if st["steps"] else {}
    snap = ops.open_control(cfg).snapshot(cfg.endpoint.name)
    breaker = {"tripped": snap.breaker_tripped, "reason": snap.breaker_reason}
    if "traffic" in (st.get("current") or {}):
        traffic.stop(st["current"]["traffic"])
    st.pop("current", None)
    st.update(finished=True, stopped=stopped,
              decision=final_decision(last.get("decision"), breaker, stopped))
    write_state(cfg, "canary", st)
    return st


def poke(cfg: Config, deployment: dict[str, Any]) -> dict[str, Any] | None:
    """One look at the canary: the finished result, or None to be called again later."""
    st: dict[str, Any] = read_state(cfg, "canary") or {}
    if st.get("finished"):
        return st
    canary_fault(cfg)
    now = time.time()
    if not st:
        st = {"experiment_id": cfg.experiment.id, "steps": [], "offset": 0, "started_at": now,
              "finished": False, "decision": None, "traffic": cfg.canary.traffic}
    snap = ops.open_control(cfg).snapshot(cfg.endpoint.name)
    if snap.breaker_tripped and st["steps"] + ([st["current"]] if st.get("current") else []):
        if st.get("current"):
            _analyze_step(cfg, st, {"ended": "breaker"})
        return _finish(cfg, st, "breaker")
    if st.get("current") is None:
        _start_step(cfg, st, deployment)
        write_state(cfg, "canary", st)
        return None
    done, res = _step_done(cfg, st["current"], now)
    over_budget = now - st["started_at"] >= cfg.canary.max_duration_s
    if not (done or over_budget):
        st["current"]["progress"] = res
        write_state(cfg, "canary", st)
        return None
    step = _analyze_step(cfg, st, res)
    stopped = stop_reason(step["decision"], step["breaker"], now - st["started_at"],
                          cfg.canary.max_duration_s)
    if stopped or len(st["steps"]) >= len(ramp(cfg)):
        return _finish(cfg, st, stopped or "ramp_complete")
    _start_step(cfg, st, deployment)
    write_state(cfg, "canary", st)
    return None


def run(cfg: Config, deployment: dict[str, Any]) -> dict[str, Any]:
    """Poll until the canary is over (``abx run``, ``dvc repro``: no Airflow to reschedule)."""
    wait = cfg.canary.poke_interval_s
    if cfg.canary.traffic == "simulator":
        wait = min(wait, 0.5)
    while (res := poke(cfg, deployment)) is None:
        time.sleep(wait)
    return res
