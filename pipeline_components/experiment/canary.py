"""The canary ramp's rules (pure): the looks, the weights per step, when to stop, what to decide.

The ramp runs on the endpoint through ``experiment.live_canary`` (one poll at a time, an Airflow
sensor). After each step it reads the breaker and the analysis decision, and stops early on

* a breaker event (the router already moved all traffic to the champion by itself),
* a blocking reason: SRM, a guardrail breach, a confidently negative effect (-> rollback),
* a confident positive result (-> promote),
* the time budget ``canary.max_duration_s``.

Still inconclusive after the last step, it keeps collecting at that share for up to
``canary.extra_looks`` more looks (the sequential test stays valid however often it looks).

"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from pipeline_components.analysis.decision import reason_dicts
from pipeline_components.config import Config

log = logging.getLogger(__name__)

BREAKER = "BREAKER"
INCONCLUSIVE = "INCONCLUSIVE_AT_END"
BUDGET = "TIME_BUDGET"


def ramp(cfg: Config) -> list[float]:
    """Challenger share per look: the steps, then ``extra_looks`` more at the last step."""
    steps = list(cfg.canary.steps)
    return steps + [steps[-1]] * cfg.canary.extra_looks


def step_weights(share: float) -> dict[str, float]:
    return {"champion": round(1.0 - share, 6), "challenger": round(share, 6)}


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
    """CUPED covariates (holdout id + pre-experiment value), the drift reference (train) and,
    when CUPAC is wanted (``wants_cupac``), the champion's scorer."""
    from pipeline_components.features import load_split

    cov_col, id_col = cfg.data.covariate_column, cfg.data.id_column
    holdout = load_split(cfg, "holdout")
    covariates = holdout[[id_col, cov_col]] if cov_col and cov_col in holdout else None
    scorer = champion_scorer(cfg) if wants_cupac(cfg, covariates is not None) else None
    return {"covariates": covariates, "reference": load_split(cfg, "train"),
            "champion_scorer": scorer}


def wants_cupac(cfg: Config, has_pre_period: bool) -> bool:
    """CUPAC needs the champion model: ``cuped_covariate: cupac``, or ``auto`` without a
    pre-period covariate."""
    a = cfg.analysis
    return a.cuped and (a.cuped_covariate == "cupac"
                        or (a.cuped_covariate == "auto" and not has_pre_period))


def champion_scorer(cfg: Config) -> Callable[..., Any] | None:
    """The champion alias's ``predict`` on raw feature mappings (the router's own loader), or
    None with a warning when it cannot be loaded: CUPAC only narrows the interval, so a registry
    hiccup must not stop the canary (the analysis then runs unadjusted)."""
    from pipeline_components.serving.variants import default_variants, load_variant
    from pipeline_components.tracking import configure_mlflow

    try:
        configure_mlflow(cfg)
        s = cfg.serving
        var = load_variant("champion", default_variants(cfg.registry.model_name)["champion"],
                           frozenset(cfg.data.categorical_features), s.runtime, s.trusted_types)
    except Exception as exc:  # registry down, no champion yet, a model that does not load
        log.warning("CUPAC off for this look: champion not loadable: %s", exc)
        return None
    return var.predict


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


def weights_since(steps: list[dict[str, Any]], share: float) -> float | None:
    """Start of the run of earlier steps at this same share (SRM checks every unit that came in
    under the current weights: an extra look that added few units is still testable)."""
    since = None
    for step in reversed(steps):
        if step.get("share") != share:
            break
        since = float(step["started_at"])
    return since


def srm_weights(cfg: Config, weights: dict[str, float]) -> dict[str, float]:
    """The split SRM should expect: in shadow mode every user is served by the champion."""
    if cfg.serving.shadow:
        return {k: (1.0 if k == "champion" else 0.0) for k in weights}
    return weights
