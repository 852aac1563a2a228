"""Guardrail circuit breaker on the challenger: sliding-window error rate and latency quantile.

Every challenger call (served or shadow) is recorded as (time, error?, latency). Once the window
holds at least ``min_requests`` calls, an error rate above ``max_error_rate`` or a latency
quantile above ``max_latency_ms`` trips the breaker. Tripping is sticky: the router then sends all
traffic to the champion until an operator resets it, and the reason is recorded and reported.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from pipeline_components.config import GuardrailConfig


@dataclass(frozen=True)
class Trip:
    """Why and when the breaker opened (small and JSON-able: it goes into an ``events`` row)."""

    reason: str
    ts: float
    n: int
    error_rate: float
    latency_q_ms: float

    def as_dict(self) -> dict[str, float | int | str]:
        return {"reason": self.reason, "ts": self.ts, "n": self.n,
                "error_rate": self.error_rate, "latency_q_ms": self.latency_q_ms}


class Breaker:
    """Sliding-window guardrail; ``record`` returns a ``Trip`` exactly once, when it opens."""

    def __init__(self, cfg: GuardrailConfig, check_every_s: float = 0.25):
        self.cfg = cfg
        self._calls: deque[tuple[float, bool, float]] = deque()
        self._errors = 0
        self._lock = threading.Lock()
        # The quantile is O(window) to compute, so it is re-evaluated at most every check_every_s
        # (a latency breach is about sustained slowness; the error rate is checked on every call).
        self._next_latency_check = 0.0
        self._check_every_s = check_every_s
        self.trip: Trip | None = None

    @property
    def tripped(self) -> bool:
        return self.trip is not None

    def _evict(self, now: float) -> None:
        horizon = now - self.cfg.window_s
        while self._calls and self._calls[0][0] < horizon:
            if self._calls.popleft()[1]:
                self._errors -= 1

    def record(self, error: bool, latency_ms: float, now: float | None = None) -> Trip | None:
        """Add one challenger call and evaluate the guardrails (latency every few calls)."""
        if self.trip is not None:
            return None
        now = time.time() if now is None else now
        with self._lock:
            self._calls.append((now, error, latency_ms))
            self._errors += error
            self._evict(now)
            n = len(self._calls)
            if n < self.cfg.min_requests:
                return None
            rate = self._errors / n
            lat_q = 0.0
            if now >= self._next_latency_check:
                self._next_latency_check = now + self._check_every_s
                lat_q = self._latency_q()
            reason = None
            if rate > self.cfg.max_error_rate:
                reason = (f"challenger error rate {rate:.3f} > {self.cfg.max_error_rate}"
                          f" over {n} calls")
            elif lat_q > self.cfg.max_latency_ms:
                reason = (f"challenger p{self.cfg.latency_quantile * 100:g} latency {lat_q:.1f} ms"
                          f" > {self.cfg.max_latency_ms} ms over {n} calls")
            if reason is None:
                return None
            self.trip = Trip(reason, now, n, rate, lat_q)
            return self.trip

    def _latency_q(self) -> float:
        lat = np.fromiter((c[2] for c in self._calls), dtype=np.float64, count=len(self._calls))
        return float(np.quantile(lat, self.cfg.latency_quantile))

    def window(self, now: float | None = None) -> dict[str, float | int]:
        """Current window summary for the status endpoint."""
        now = time.time() if now is None else now
        with self._lock:
            self._evict(now)
            n = len(self._calls)
            return {"n": n, "errors": self._errors,
                    "error_rate": self._errors / n if n else 0.0,
                    "latency_q_ms": self._latency_q() if n else 0.0}

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()
            self._errors = 0
            self._next_latency_check = 0.0
            self.trip = None
