"""Synthetic prediction logs for tests and demos (shipped like Optuna's ``testing`` module).

``simulate_log`` writes rows in the store's shape (``pipeline_components.store``): predictions
with variant, status, latency and raw features, and delayed feedback with outcome and reward,
plus the per-unit pre-experiment covariate and a training reference frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

NUMERIC = [f"x{i}" for i in range(3)]
CATEGORIES = {"segment": ["new", "casual", "loyal"]}


@dataclass(frozen=True)
class SimLog:
    predictions: pd.DataFrame
    feedback: pd.DataFrame
    covariates: pd.DataFrame  # user_id, pre_activity
    reference: pd.DataFrame  # training-like frame of the raw features


@dataclass(frozen=True)
class SimSpec:
    """What to simulate; every per-variant dict falls back to the champion's value."""

    n_units: int = 2000
    weights: dict[str, float] = field(default_factory=lambda: {"champion": 0.5, "challenger": 0.5})
    reward_rate: dict[str, float] = field(default_factory=lambda: {"champion": 0.5})
    error_rate: dict[str, float] = field(default_factory=lambda: {"champion": 0.0})
    latency_ms: dict[str, float] = field(default_factory=lambda: {"champion": 20.0})
    noise: dict[str, float] = field(default_factory=lambda: {"champion": 0.35})
    requests_per_unit: int = 1
    pending_share: float = 0.0
    shadow: bool = False
    covariate_rho: float = 0.0
    drift: float = 0.0
    seed: int = 0
    t0: float = 1_700_000_000.0


def _get(d: dict[str, float], v: str) -> float:
    return d.get(v, d["champion"])


def _features(rng: np.random.Generator, n: int, shift: float) -> pd.DataFrame:
    df = pd.DataFrame({c: rng.normal(shift, 1.0, n) for c in NUMERIC})
    df["segment"] = rng.choice(CATEGORIES["segment"], n)
    return df


def _variant_rows(
    s: SimSpec, rng: np.random.Generator, variant: str, req: pd.DataFrame, served: bool,
    outcome: np.ndarray,
) -> pd.DataFrame:
    n = len(req)
    failed = rng.random(n) < _get(s.error_rate, variant)
    noise = _get(s.noise, variant)
    p = np.clip(0.3 + (outcome - 0.3) * (1 - noise) + rng.normal(0, noise / 3, n), 0.01, 0.99)
    return req.assign(
        variant=variant, model_version="1", prediction=np.where(failed, np.nan, p),
        latency_ms=rng.lognormal(np.log(_get(s.latency_ms, variant)), 0.3, n),
        status=np.where(failed, "error", "ok"), served=served,
    )


def simulate_log(spec: SimSpec | None = None, experiment_id: str = "exp") -> SimLog:
    """Build a log; units are split by ``weights`` (all champion-served when ``shadow``)."""
    s = spec or SimSpec()
    rng = np.random.default_rng(s.seed)
    names = list(s.weights)
    probs = np.array([s.weights[k] for k in names], dtype=float)
    units = np.array([f"u{i}" for i in range(s.n_units)])
    assigned = rng.choice(names, s.n_units, p=probs / probs.sum())
    x = rng.standard_normal(s.n_units)  # the pre-experiment covariate, standardised
    n_req = s.n_units * s.requests_per_unit
    u = np.arange(n_req) % s.n_units
    feats = _features(rng, n_req, s.drift).to_dict("records")
    req = pd.DataFrame({"experiment_id": experiment_id, "ts": s.t0 + np.arange(n_req) * 0.01,
                        "request_id": [f"r{i}" for i in range(n_req)], "unit_id": units[u],
                        "features": feats})
    outcome = (rng.random(n_req) < 0.3).astype(float)
    served_by = np.full(n_req, "champion") if s.shadow else assigned[u]
    parts = [_variant_rows(s, rng, v, req[served_by == v], True, outcome[served_by == v])
             for v in names]
    if s.shadow:
        parts += [_variant_rows(s, rng, v, req, False, outcome) for v in names if v != "champion"]
    rate = np.array([_get(s.reward_rate, v) for v in served_by]) + 0.2 * s.covariate_rho * x[u]
    reward = (rng.random(n_req) < np.clip(rate, 0.0, 1.0)).astype(float)
    keep = rng.random(n_req) >= s.pending_share
    fb = pd.DataFrame({"experiment_id": experiment_id, "ts": req["ts"] + 1.0,
                       "request_id": req["request_id"], "unit_id": req["unit_id"],
                       "outcome": outcome, "reward": reward})[keep]
    return SimLog(
        predictions=pd.concat(parts).sort_values("ts", kind="stable").reset_index(drop=True),
        feedback=fb.reset_index(drop=True),
        covariates=pd.DataFrame({"user_id": units, "pre_activity": x}),
        reference=_features(np.random.default_rng(s.seed + 1), 3000, 0.0),
    )
