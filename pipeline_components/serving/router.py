"""The router's runtime state and request logic, independent of HTTP.

``Router`` owns the loaded variants, the current routing table (swapped atomically: one attribute
assignment, so an in-flight request uses either the old or the new table, never half of each),
the guardrail breaker, the batched writer and the metrics. The HTTP layer (api.py, admin.py) only
parses, calls one method and serialises.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Mapping
from typing import Any

import numpy as np

from pipeline_components.config import Config
from pipeline_components.faults import variant_fault
from pipeline_components.serving.breaker import Breaker, Trip
from pipeline_components.serving.metrics import Metrics
from pipeline_components.serving.routing import CHAMPION, RoutingTable, bucket
from pipeline_components.serving.shadow import ShadowHooks, ShadowScorer
from pipeline_components.serving.variants import Variant, load_variant
from pipeline_components.serving.workers import VariantWorker
from pipeline_components.serving.writer import BatchWriter

log = logging.getLogger("abx.serving")


class Router:
    """Champion/challenger router: assignment, scoring with fallback, logging, guardrails."""

    def __init__(self, cfg: Config, variants: Mapping[str, str], writer: BatchWriter):
        if CHAMPION not in variants:
            raise ValueError(f"variants must include {CHAMPION!r}, got {sorted(variants)}")
        self.cfg = cfg
        self.uris = dict(variants)
        self.exp_id = cfg.experiment.id
        self.salt = cfg.salt
        self.shadow = cfg.serving.shadow
        self.writer = writer
        self.metrics = Metrics()
        self.breaker = Breaker(cfg.serving.guardrails)
        self.variants: dict[str, Variant] = {}
        self.load_error: str | None = None
        self.names: frozenset[str] = frozenset()
        self.categorical: frozenset[str] = frozenset()
        self.nullable: frozenset[str] = cfg.nullable_features()  # null ok: the models impute
        self.allowed_categories = {c: frozenset(v) for c, v in
                                   cfg.data.categorical_features.items()}
        self.has_remote = False
        self._fault = variant_fault(cfg)  # None unless tests/demos turn faults on
        self._workers: dict[str, VariantWorker] = {}
        self._admin_lock = threading.Lock()
        self.counts: dict[str, Counter[str]] = defaultdict(Counter)
        weights = {n: w for n, w in cfg.serving.weights.items() if n in variants}
        self.configured = weights or {CHAMPION: 1.0}
        self.table = RoutingTable.from_weights(self.configured)
        self.shadow_scorer = ShadowScorer(ShadowHooks(
            breaker=self.breaker, writer=self.writer, variants=lambda: self.variants,
            call=self.call, record_ok=lambda ms: self._breaker_record(False, ms),
            record_error=self._record_error,
            log=lambda ts, row, ans: self._log(ts, row, ans, served=False)))

    # ------------------------------------------------------------------ lifecycle
    @property
    def ready(self) -> bool:
        return len(self.variants) == len(self.uris)

    def load(self) -> None:
        """Load every variant (once); on failure keep the message for /readyz."""
        hint = frozenset(self.cfg.data.categorical_features)
        try:
            s = self.cfg.serving
            loaded = {n: load_variant(n, u, hint, s.runtime, s.trusted_types)
                      for n, u in self.uris.items()}
        except Exception as exc:
            self.load_error = str(exc)
            log.error("variant loading failed: %s", exc)
            return
        names: set[str] = set()
        cats: set[str] = set()
        for v in loaded.values():
            names |= set(v.spec.names)
            cats |= set(v.spec.categorical)
        self.names, self.categorical = frozenset(names), frozenset(cats)
        self.has_remote = any(v.is_remote for v in loaded.values())
        self.variants = loaded
        for v in loaded.values():
            self.worker(v)
        self.metrics.set_weights(self.table.as_dict(), self.breaker.tripped)
        if self.shadow:
            self.shadow_scorer.start()

    def close(self, deadline: float | None = None) -> None:
        """Drain the shadow queue, then the writer, both before ``deadline`` (monotonic)."""
        deadline = time.monotonic() + 30.0 if deadline is None else deadline
        for w in self._workers.values():
            w.close()
        self.shadow_scorer.close(max(0.0, (deadline - time.monotonic()) / 2))
        self.writer.close(max(0.0, deadline - time.monotonic()))

    # ------------------------------------------------------------------ scoring
    def assign(self, unit_id: str, forced: str | None) -> str:
        if forced is not None:
            return forced
        if self.shadow:
            return CHAMPION
        return self.table.pick(bucket(unit_id, self.salt))

    def call(self, variant: Variant, feats: list[Mapping[str, Any]]) -> np.ndarray:
        """The one place a variant's model is called: a variant worker's thread (or the shadow
        thread) hands it the rows of one coalesced call. May raise."""
        if self._fault is not None:
            self._fault(variant.name)
        return variant.predict(feats)

    def worker(self, var: Variant) -> VariantWorker:
        """The variant's worker (a new one when the variant object was swapped)."""
        w = self._workers.get(var.name)
        if w is None or w.variant is not var:
            if w is not None:
                w.close()
            w = self._new_worker(var)
            self._workers[var.name] = w
        return w

    def _new_worker(self, var: Variant) -> VariantWorker:
        s = self.cfg.serving
        return VariantWorker(var, self.call, s.variant_timeouts_s.get(var.name, s.model_timeout_s),
                             s.batch_max_rows, coalesce=s.micro_batch,
                             wait_s=s.batch_wait_ms / 1000.0)

    async def predict(self, rows: list[tuple[str, Mapping[str, Any]]],
                      forced: str | None) -> list[dict]:
        """Assign, score (off the loop, per variant), fall back, log; one answer per row.

        Each variant group of the request awaits only its own variant's worker, so a request
        whose rows all go to the champion never waits for a challenger.
        """
        now = time.time()
        groups: dict[str, list[int]] = defaultdict(list)
        for i, (unit_id, _) in enumerate(rows):
            groups[self.assign(unit_id, forced)].append(i)
        jobs = [self._score_group(name, [rows[i][1] for i in idx]) for name, idx in groups.items()]
        results = [await jobs[0]] if len(jobs) == 1 else await asyncio.gather(*jobs)
        answers: list[dict] = [{}] * len(rows)
        for idx, group in zip(groups.values(), results, strict=True):
            for i, ans in zip(idx, group, strict=True):
                ans["request_id"] = os.urandom(16).hex()
                answers[i] = ans
                self._log(now, rows[i], ans, served=True, forced=forced is not None)
        if self.shadow:
            self.shadow_scorer.submit(rows, answers, now)
        return answers

    async def _score_group(self, name: str, feats: list[Mapping[str, Any]]) -> list[dict]:
        """Score one request's rows of one variant; latency is this request's own wait."""
        var = self.variants[name]
        champ = self.variants[CHAMPION]
        t0 = time.perf_counter()
        try:
            preds = await self.worker(var).score(feats)
            status, version = "ok", var.model_version
        except Exception as exc:  # model error, timeout or a stuck variant: fall back
            self._record_error(var, exc, len(feats), (time.perf_counter() - t0) * 1000.0)
            if name == CHAMPION:
                return [self._answer(None, name, champ.model_version, 0.0, "error") for _ in feats]
            try:
                preds = await self.worker(champ).score(feats)
                status, version = "fallback", champ.model_version
            except Exception as exc2:
                self._record_error(champ, exc2, len(feats), 0.0)
                return [self._answer(None, name, var.model_version, 0.0, "error") for _ in feats]
        ms = (time.perf_counter() - t0) * 1000.0
        if status == "ok" and name != CHAMPION:
            for _ in feats:
                self._breaker_record(False, ms)
        return [self._answer(float(p), name, version, ms, status) for p in preds]

    @staticmethod
    def _answer(p: float | None, name: str, version: str, ms: float, status: str) -> dict:
        return {"prediction": p, "variant": name, "model_version": version,
                "latency_ms": ms, "status": status}

    def _record_error(self, var: Variant, exc: Exception, n: int, ms: float = 0.0) -> None:
        log.warning("variant %s failed on %d rows: %s: %s", var.name, n, type(exc).__name__,
                    str(exc)[:200])
        self.metrics.error(var.name, var.model_version)
        self.counts[var.name]["errors"] += n
        if var.name != CHAMPION:
            for _ in range(n):
                self._breaker_record(True, ms)

    def _log(
        self, now: float, row: tuple[str, Mapping[str, Any]], ans: dict, served: bool,
        forced: bool = False,
    ) -> None:
        self.counts[ans["variant"]]["requests" if served else "shadow"] += 1
        self.metrics.observe(ans["variant"], ans["model_version"], ans["status"], served,
                             ans["latency_ms"] / 1000.0)
        self.writer.put("predictions", {
            "experiment_id": self.exp_id, "ts": now, "request_id": ans["request_id"],
            "unit_id": row[0], "variant": ans["variant"], "model_version": ans["model_version"],
            "prediction": ans["prediction"], "latency_ms": ans["latency_ms"],
            "status": ans["status"], "served": served, "features": row[1],
            "assignment": "forced" if forced else "hash",
        })

    # ------------------------------------------------------------------ guardrails and admin
    def _breaker_record(self, error: bool, ms: float) -> None:
        trip = self.breaker.record(error, ms)
        if trip is not None:
            self._on_trip(trip)

    def _on_trip(self, trip: Trip) -> None:
        log.error("guardrail breaker tripped: %s", trip.reason)
        self.table = RoutingTable.from_weights({n: float(n == CHAMPION) for n in self.uris})
        self.metrics.set_weights(self.table.as_dict(), True)
        self.event("breaker", trip.as_dict())

    def event(self, kind: str, detail: Mapping[str, Any]) -> None:
        self.writer.put("events", {"experiment_id": self.exp_id, "ts": time.time(),
                                   "kind": kind, "detail": dict(detail)})

    def set_weights(self, weights: Mapping[str, float], kind: str = "weights",
                    detail: Mapping[str, Any] | None = None, reset_breaker: bool = False) -> dict:
        """Validate and swap in a new routing table atomically; records an ``events`` row.

        Raises:
            ValueError: unknown variant, bad weight, or a tripped breaker without reset.
        """
        unknown = sorted(set(weights) - set(self.uris))
        if unknown:
            raise ValueError(f"weights.{unknown[0]}: unknown variant (have {sorted(self.uris)})")
        table = RoutingTable.from_weights(weights)
        with self._admin_lock:
            if self.breaker.tripped and not reset_breaker and set(table.names) != {CHAMPION}:
                raise PermissionError("breaker tripped: pass reset_breaker=true to route "
                                      f"traffic to the challenger again ({self.breaker.trip})")
            if reset_breaker:
                self.breaker.reset()
            self.configured = dict(weights)
            self.table = table
            self.metrics.set_weights(table.as_dict(), self.breaker.tripped)
            self.event(kind, {"weights": table.as_dict(), **(detail or {})})
        return self.status()

    def batching_status(self) -> dict:
        """Totals over workers plus each worker's paths and batch sizes (workers.py)."""
        s = self.cfg.serving
        per = {n: w.stats() for n, w in self._workers.items()}
        return {"enabled": s.micro_batch, "wait_ms": s.batch_wait_ms,
                "max_rows": s.batch_max_rows,
                "calls": sum(p["calls"] for p in per.values()),
                "requests": sum(p["requests"] for p in per.values()), "workers": per}

    def status(self) -> dict:
        trip = self.breaker.trip
        return {
            "experiment_id": self.exp_id,
            "ready": self.ready,
            "load_error": self.load_error,
            "weights": self.table.as_dict(),
            "configured_weights": self.configured,
            "shadow": self.shadow,
            "shadow_dropped": self.shadow_scorer.dropped,
            "variants": {
                n: {"uri": u, "loaded": n in self.variants,
                    "model_version": self.variants[n].model_version if n in self.variants else None,
                    "path": self.variants[n].path if n in self.variants else None,
                    "runtime": self.variants[n].runtime if n in self.variants else None}
                for n, u in self.uris.items()
            },
            "breaker": {"tripped": trip is not None, "reason": trip.reason if trip else None,
                        "tripped_at": trip.ts if trip else None, "window": self.breaker.window()},
            "counts": {k: dict(v) for k, v in self.counts.items()},
            "rows_written": dict(self.writer.written),
            "pending_rows": self.writer.pending(),
            "micro_batch": self.batching_status(),
            "timeouts": {n: w.timeouts for n, w in self._workers.items()},
            "writer": {"dead_letters": self.writer.dead_lettered, "replayed": self.writer.replayed,
                       "failures": self.writer.failures, "durable": self.writer.durable,
                       "max_pending": self.writer.max_pending},
        }
