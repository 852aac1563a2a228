"""Prometheus metrics per variant and model version (one registry per app, so tests can build many).

Label children are bound once per (variant, version, status) and cached: ``labels()`` does a dict
lookup under a lock, a cached child's ``inc``/``observe`` is ~1 µs.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """Request/error counters, a latency histogram, and the weights and breaker gauges."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "abx_requests", "Predictions answered",
            ["variant", "model_version", "status", "served"],
            registry=self.registry,
        )
        self.errors = Counter(
            "abx_errors", "Variant calls that raised", ["variant", "model_version"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "abx_latency_seconds", "Model latency per call", ["variant", "model_version"],
            buckets=BUCKETS, registry=self.registry,
        )
        self.bad_requests = Counter(
            "abx_bad_requests", "Rejected requests (4xx)", ["endpoint"], registry=self.registry
        )
        self.refused = Counter(  # why /predict refused a row: the canary's dropped users
            "abx_refused", "Refused /predict requests per reason", ["reason"],
            registry=self.registry)
        self.unseen = Counter(  # accepted, answered through the model's explicit "other" level
            "abx_unseen_categories", "Categorical values outside the trained categories",
            ["feature"], registry=self.registry)
        self.weight = Gauge("abx_weight", "Effective traffic share", ["variant"],
                            registry=self.registry)
        self.breaker_open = Gauge("abx_breaker_open", "1 when the guardrail breaker has tripped",
                                  registry=self.registry)
        self._children: dict[tuple[str, ...], tuple[object, object, object]] = {}

    def observe(
        self, variant: str, version: str, status: str, served: bool, seconds: float
    ) -> None:
        key = (variant, version, status, "1" if served else "0")
        kids = self._children.get(key)
        if kids is None:
            kids = (
                self.requests.labels(variant, version, status, key[3]),
                self.errors.labels(variant, version),
                self.latency.labels(variant, version),
            )
            self._children[key] = kids
        kids[0].inc()  # type: ignore[attr-defined]
        kids[2].observe(seconds)  # type: ignore[attr-defined]

    def error(self, variant: str, version: str) -> None:
        self.errors.labels(variant, version).inc()

    def set_weights(self, weights: dict[str, float], tripped: bool) -> None:
        for name, w in weights.items():
            self.weight.labels(name).set(w)
        self.breaker_open.set(1.0 if tripped else 0.0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
