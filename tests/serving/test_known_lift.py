"""The decision finds a known true lift, and none where there is none.

The simulator draws rewards with a lift we set (``simulator.true_lift``), sends them through a real
router serving the two registered models over HTTP, and the production analysis reads the
prediction store the router wrote: the end-to-end check that a real effect is found in the
direction it has, and that an A/A run does not promote.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pipeline_components.analysis.run import analyze
from pipeline_components.config import Config
from pipeline_components.experiment.simulate import User, known_lift, simulate_users
from pipeline_components.serving.testing import TEST_CLIENT_KEY, ThreadServer


@pytest.mark.parametrize(("lift", "want"), [(0.2, "promote"), (-0.2, "rollback"),
                                            (0.0, "continue")])
def test_decision_follows_the_known_lift(
    make_cfg: Callable[..., Config], rows: list[dict[str, Any]], lift: float, want: str
) -> None:
    cfg = make_cfg({"experiment.id": f"known-lift-{lift:+g}", "simulator.true_lift": lift,
                    "serving.weights": {"champion": 0.5, "challenger": 0.5},
                    "analysis.method": "msprt",
                    # this test is about the primary metric: latency on a shared test machine
                    # must neither trip the breaker nor hold the guardrail
                    "serving.guardrails.max_latency_ms": 60_000.0,
                    "analysis.latency_margin_ms": 60_000.0})
    truth = known_lift(cfg)
    assert truth is not None and truth.lift == lift
    users = [User(f"u{i}", rows[i % len(rows)], 0) for i in range(1000)]
    server = ThreadServer(cfg).start()
    try:
        res = simulate_users(server.url, users, rate_per_s=5000, concurrency=4, progress=False,
                             client_key=TEST_CLIENT_KEY, truth=truth)
    finally:
        server.stop()  # graceful: the writer flushes every prediction and outcome
    assert res.answered == res.feedback_sent == 1000
    decision = analyze(cfg, expected_weights={"champion": 0.5, "challenger": 0.5})
    assert decision.action == want, decision.to_json()
    assert decision.comparisons[0].effect.lift == pytest.approx(lift, abs=0.08)
