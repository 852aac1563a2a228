"""The guardrail breaker: trips on error rate or latency quantile, only with enough calls."""

from __future__ import annotations

from pipeline_components.config import GuardrailConfig
from pipeline_components.serving.breaker import Breaker

CFG = GuardrailConfig(window_s=10.0, min_requests=20, max_error_rate=0.1,
                      latency_quantile=0.9, max_latency_ms=50.0)


def test_needs_min_requests_then_trips_on_error_rate() -> None:
    b = Breaker(CFG)
    for i in range(19):
        assert b.record(error=True, latency_ms=1.0, now=100.0 + i * 0.01) is None
    trip = b.record(error=True, latency_ms=1.0, now=100.2)
    assert trip is not None and "error rate" in trip.reason and trip.n == 20
    assert b.tripped and b.record(True, 1.0, now=100.3) is None  # reported once


def test_healthy_traffic_never_trips() -> None:
    b = Breaker(CFG)
    for i in range(500):
        assert b.record(error=(i % 20 == 0), latency_ms=5.0, now=100.0 + i * 0.01) is None
    assert not b.tripped and b.window(now=105.0)["n"] == 500


def test_latency_quantile_trips() -> None:
    b = Breaker(CFG, check_every_s=0.0)
    trips = [b.record(False, 200.0 if i % 5 == 0 else 5.0, now=100.0 + i * 0.01)
             for i in range(40)]
    trip = next(t for t in trips if t is not None)
    assert "latency" in trip.reason and trip.latency_q_ms > 50.0


def test_window_forgets_old_errors_and_reset_clears() -> None:
    b = Breaker(CFG)
    for i in range(10):
        b.record(True, 1.0, now=100.0 + i * 0.01)
    for i in range(30):  # 11 s later: the errors are outside the window
        assert b.record(False, 1.0, now=111.0 + i * 0.01) is None
    assert b.window(now=111.5)["errors"] == 0
    for i in range(30):
        b.record(True, 1.0, now=112.0 + i * 0.01)
    assert b.tripped
    b.reset()
    assert not b.tripped and b.window(now=112.5)["n"] == 0
