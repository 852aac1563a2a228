"""The canary ramp: for each traffic step, set weights, send traffic, analyse, maybe stop early.

One call runs the whole ramp (``canary.steps``, e.g. 5% -> 25% -> 50% challenger traffic). After
each step it reads the router's status and the analysis decision, and stops early on

* a breaker event (the router already moved all traffic to the champion by itself),
* a blocking reason: SRM, a guardrail breach, a confidently negative effect (-> rollback),
* a confident positive result (-> promote),
* the time budget ``canary.max_duration_s``.

Still inconclusive after the last step, it keeps collecting at that share for up to
``canary.extra_looks`` more looks (the sequential test stays valid however often it looks).

Progress is saved after every step (``canary.json``), so an Airflow retry resumes at the next
step instead of replaying traffic, and a finished canary is returned as is.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from pipeline_components.analysis.decision import reason_dicts
from pipeline_components.config import Config
from pipeline_components.experiment.simulate import (
    load_users,
    requests_for_step,
    simulate_users,
    take,
)
from pipeline_components.experiment.state import admin_token, read_state, write_state
from pipeline_components.faults import canary_fault

BREAKER = "BREAKER"
INCONCLUSIVE = "INCONCLUSIVE_AT_END"
BUDGET = "TIME_BUDGET"


def ramp(cfg: Config) -> list[float]:
    """Challenger share per look: the steps, then ``extra_looks`` more at the last step."""
    steps = list(cfg.canary.steps)
    return steps + [steps[-1]] * cfg.canary.extra_looks


def step_weights(share: float) -> dict[str, float]:
    return {"champion": round(1.0 - share, 6), "challenger": round(share, 6)}


def wait_flushed(client: Any, timeout_s: float) -> dict[str, Any]:
    """Poll the router until its log writer has no pending rows (or the timeout); return status."""
    deadline = time.monotonic() + timeout_s
    status = client.status()
    while int(status.get("pending_rows") or 0) > 0 and time.monotonic() < deadline:
        time.sleep(0.1)
        status = client.status()
    time.sleep(0.05)  # the writer commits just after it empties its queue
    return client.status()


def stop_reason(
    decision: Mapping[str, Any], breaker: Mapping[str, Any], elapsed_s: float, budget_s: float
) -> str | None:
    """Why the ramp stops after this step (None: go on to the next step). Pure."""
    if breaker.get("tripped"):
        return "breaker"
    if decision.get("action") in ("promote", "rollback"):
        return str(decision["action"])
    if elapsed_s >= budget_s:
        return "budget"
    return None


def final_decision(
    decision: Mapping[str, Any] | None, breaker: Mapping[str, Any], stopped: str | None
) -> dict[str, Any]:
    """The decision the DAG branches on: only promote or rollback; the champion wins ties. Pure.

    A tripped breaker overrides everything (the router saw the challenger fail); a ramp that
    ended without a confident result keeps the champion.
    """
    base = dict(decision or {"action": "continue", "reasons": []})
    reasons = reason_dicts(base.get("reasons"))
    if breaker.get("tripped"):
        msg = f"router breaker tripped: {breaker.get('reason') or 'challenger unhealthy'}"
        return {**base, "action": "rollback", "reasons": [_r(BREAKER, msg, True), *reasons]}
    if base.get("action") in ("promote", "rollback"):
        return {**base, "reasons": reasons}
    if stopped == "budget":
        code, why = BUDGET, "canary time budget used up before a confident result"
    else:
        code, why = INCONCLUSIVE, "no confident result after the last ramp step"
    msg = f"{why}; the champion is kept"
    return {**base, "action": "rollback", "reasons": [_r(code, msg, True), *reasons]}


def _r(code: str, message: str, blocking: bool) -> dict[str, Any]:
    return {"code": code, "message": message, "blocking": blocking}


def analysis_inputs(cfg: Config) -> dict[str, Any]:
    """CUPED covariates (holdout id + pre-experiment value) and the drift reference (train)."""
    from pipeline_components.features import load_split

    cov_col, id_col = cfg.data.covariate_column, cfg.data.id_column
    holdout = load_split(cfg, "holdout")
    covariates = holdout[[id_col, cov_col]] if cov_col and cov_col in holdout else None
    return {"covariates": covariates, "reference": load_split(cfg, "train")}


def info_fractions(steps: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Information fractions of the earlier looks, per challenger (group-sequential spending
    needs the real ones, and each A/B/n comparison has its own); looks without one (msprt,
    missing) contribute nothing."""
    out: dict[str, list[float]] = {}
    for step in steps:
        for comp in (step.get("decision") or {}).get("comparisons") or []:
            frac = (comp.get("effect") or {}).get("details", {}).get("info_fraction")
            if isinstance(frac, int | float) and comp.get("variant"):
                out.setdefault(str(comp["variant"]), []).append(float(frac))
    return out


def srm_weights(cfg: Config, weights: dict[str, float]) -> dict[str, float]:
    """The split SRM should expect: in shadow mode every user is served by the champion."""
    if cfg.serving.shadow:
        return {k: (1.0 if k == "champion" else 0.0) for k in weights}
    return weights


def _analyze(
    cfg: Config, weights: dict[str, float], look: int, since: float, inputs: dict[str, Any]
) -> dict[str, Any]:
    from pipeline_components.analysis.run import analyze

    decision = analyze(cfg, expected_weights=srm_weights(cfg, weights), look=look,
                       srm_since_ts=since, max_looks=len(ramp(cfg)), **inputs)
    return decision.to_dict()


def run_canary(cfg: Config, deployment: Mapping[str, Any], *, progress: bool = True) -> dict:
    """Run (or resume) the ramp against a deployed router; returns the JSON-able canary result."""
    saved = read_state(cfg, "canary") or {}
    if saved.get("finished"):
        return saved
    canary_fault(cfg)
    from pipeline_components.deploy.client import RouterClient

    url = str(deployment["url"])
    client = RouterClient(url, admin_token(cfg))
    users = load_users(cfg)
    inputs = analysis_inputs(cfg)
    steps: list[dict[str, Any]] = list(saved.get("steps", []))
    offset = int(saved.get("offset", 0))
    started = float(saved.get("started_at", time.time()))
    decision: dict[str, Any] | None = steps[-1]["decision"] if steps else None
    breaker: dict[str, Any] = {}
    stopped: str | None = None
    try:
        for look, share in list(enumerate(ramp(cfg), 1))[len(steps):]:
            inputs["previous_fractions"] = info_fractions(steps)
            step = _run_step(cfg, client, url, (users, inputs), look, share, offset, progress)
            offset += step["requests"]
            decision, breaker = step["decision"], step["breaker"]
            steps.append(step)
            write_state(cfg, "canary", _result(cfg, steps, offset, started, None, False))
            stopped = stop_reason(decision, breaker, time.time() - started,
                                  cfg.canary.max_duration_s)
            if stopped:
                break
    finally:
        client.close()
    result = _result(cfg, steps, offset, started, final_decision(decision, breaker, stopped), True)
    result["stopped"] = stopped or "ramp_complete"
    write_state(cfg, "canary", result)
    return result


def _run_step(
    cfg: Config, client: Any, url: str, data: tuple[list, dict], look: int, share: float,
    offset: int, progress: bool,
) -> dict[str, Any]:
    users, inputs = data
    weights = step_weights(share)
    client.set_weights(weights)
    t0 = time.time()
    n = requests_for_step(share, cfg.canary.min_samples_per_step, cfg.simulator.max_requests)
    sim = cfg.simulator
    res = simulate_users(
        url, take(users, offset, n), rate_per_s=sim.rate_per_s, concurrency=sim.concurrency,
        feedback_delay_s=sim.feedback_delay_s, timeout_s=sim.timeout_s, progress=progress,
        label=f"canary step {look}: challenger {share:.0%}",
    )
    status = wait_flushed(client, cfg.canary.flush_wait_s)
    decision = _analyze(cfg, weights, look, t0, inputs)
    return {"look": look, "share": share, "weights": weights, "started_at": t0,
            "ended_at": time.time(), "requests": n, "simulation": res.to_dict(),
            "breaker": dict(status.get("breaker") or {}), "decision": decision}


def _result(
    cfg: Config, steps: list, offset: int, started: float, final: dict | None, finished: bool
) -> dict[str, Any]:
    return {"experiment_id": cfg.experiment.id, "steps": steps, "offset": offset,
            "started_at": started, "finished": finished, "decision": final}
