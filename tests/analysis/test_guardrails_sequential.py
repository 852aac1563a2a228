"""Guardrails stay valid when the canary reads them at every look, with requests clustered in users.

Seeded Monte Carlo at the boundary of the hypotheses: a challenger worse by exactly the margin may
``pass`` in at most alpha of the runs over all looks, and an equal one (margin 0) may ``breach``
in at most alpha. Bounds are alpha + 3 standard errors of the replicate count.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline_components.analysis.guardrails import (
    design_effect,
    error_rate_guardrail,
    latency_guardrail,
)

ALPHA, LOOKS = 0.05, 5


def _bound(reps: int) -> float:
    return ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / reps)


def _clustered_errors(
    rng: np.random.Generator, users: int, rate: float, per_user: int
) -> tuple[np.ndarray, np.ndarray]:
    """Errors per user: each user has an own propensity (Beta with mean ``rate``, ICC ~0.2)."""
    p = rng.beta(4 * rate, 4 * (1 - rate), users)
    n = rng.integers(1, 2 * per_user, users).astype(float)
    return rng.binomial(n.astype(int), p).astype(float), n


@pytest.mark.parametrize(
    ("margin", "worse_by", "bad"), [(0.02, 0.02, "pass"), (0.0, 0.0, "breach")])
def test_error_rate_guardrail_is_valid_under_looks_and_clusters(
    margin: float, worse_by: float, bad: str
) -> None:
    rng = np.random.default_rng(11)
    reps, users_per_look = 1000, 150
    hits = 0
    for _ in range(reps):
        e0, n0 = _clustered_errors(rng, LOOKS * users_per_look, 0.05, 5)
        e1, n1 = _clustered_errors(rng, LOOKS * users_per_look, 0.05 + worse_by, 5)
        for k in range(1, LOOKS + 1):
            m = k * users_per_look
            res = error_rate_guardrail((e0[:m], n0[:m]), (e1[:m], n1[:m]), margin, ALPHA)
            if res.status == bad:
                hits += 1
                break
    assert hits / reps <= _bound(reps), hits


def test_error_rate_guardrail_still_passes_a_good_challenger() -> None:
    rng = np.random.default_rng(12)
    e0, n0 = _clustered_errors(rng, 4000, 0.02, 5)
    e1, n1 = _clustered_errors(rng, 4000, 0.02, 5)
    assert error_rate_guardrail((e0, n0), (e1, n1), 0.01, ALPHA).status == "pass"
    bad = error_rate_guardrail((e0, n0), (e1 + n1 // 4, n1), 0.01, ALPHA)
    assert bad.status == "breach" and bad.bound[0] > 0.01


@pytest.mark.slow
def test_latency_guardrail_is_valid_under_looks_and_clusters() -> None:
    # Each user has a slow or fast device (a per-user scale), 10 requests each; the challenger's
    # p99 is exactly the champion's + margin. Reading the guardrail at 5 looks may pass it in at
    # most alpha of the runs (the per-request test of every look: ~25%).
    rng = np.random.default_rng(13)
    reps, users_per_look, per_user, margin = 200, 100, 10, 20.0

    def arm(users: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
        scale = rng.lognormal(0.0, 0.8, users)
        lat = np.repeat(scale, per_user) * rng.lognormal(np.log(30.0), 0.3, users * per_user)
        return lat + shift, np.repeat(np.arange(users), per_user)

    hits = 0
    for _ in range(reps):
        c, cu = arm(LOOKS * users_per_look, 0.0)
        t, tu = arm(LOOKS * users_per_look, margin)
        for k in range(1, LOOKS + 1):
            m = k * users_per_look * per_user
            res = latency_guardrail(c[:m], t[:m], margin, ALPHA, look=k,
                                    control_units=cu[:m], treatment_units=tu[:m])
            if res.status == "pass":
                hits += 1
                break
    assert hits / reps <= _bound(reps), hits


def test_design_effect_of_clustered_values() -> None:
    rng = np.random.default_rng(14)
    iid = rng.random(4000) < 0.1
    assert design_effect(iid, np.arange(4000)) == pytest.approx(1.0, abs=0.15)
    same = np.repeat(rng.random(1000) < 0.1, 4)  # 4 identical requests per user: deff ~4
    assert design_effect(same, np.repeat(np.arange(1000), 4)) == pytest.approx(4.0, rel=0.1)
