"""One endpoint replica: a ``Router`` whose variants, weights and breaker follow the control state.

``EndpointRouter`` is the request-side object (the HTTP layer is the router's own); ``Follower``
is one background thread that polls the control version every ``endpoint.poll_interval_s``,
re-reads the snapshot when it moved, starts background loads of models it does not have yet, and
swaps the routing state in. A model becomes routable in this process only once it is loaded,
checked against the champion's feature contract and warmed on probe rows; a load that fails is
dropped from the control state for every replica with an event saying why, so the endpoint stays
as it was. An unloaded model leaves the routing table at once but stays in memory for
``endpoint.drain_s`` for requests already assigned to it. Promotion renames the loaded challenger
to champion: no reload, no gap.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import threading
import time
from typing import Any

from pipeline_components.config import Config
from pipeline_components.serving.breaker import Trip
from pipeline_components.serving.control import ControlStore, Snapshot, VariantState
from pipeline_components.serving.heap import freeze_loaded_heap
from pipeline_components.serving.router import Router
from pipeline_components.serving.routing import CHAMPION, RoutingTable
from pipeline_components.serving.variants import Variant, load_variant
from pipeline_components.serving.workers import VariantWorker
from pipeline_components.serving.writer import BatchWriter

log = logging.getLogger("abx.endpoint")


class EndpointRouter(Router):
    """A router with no fixed variant list: ``apply`` installs what the control state says."""

    def __init__(self, cfg: Config, writer: BatchWriter):
        super().__init__(cfg, {CHAMPION: "(loading)"}, writer)
        self.endpoint = cfg.endpoint.name
        self.exp_id = f"endpoint:{self.endpoint}"
        self.control_version = 0
        self.pending_trip: Trip | None = None
        self._draining: dict[str, float] = {}
        self._renamed: dict[tuple[str, str], Variant] = {}
        self._wake: threading.Event | None = None

    @property
    def ready(self) -> bool:
        return CHAMPION in self.variants

    def worker(self, var: Variant) -> VariantWorker:
        """One worker per loaded model (its pinned URI), not per name: a promotion renames the
        challenger to champion and keeps its worker, so no request waits on a closed one."""
        w = self._workers.get(var.uri)
        if w is None:
            w = self._new_worker(var)
            self._workers[var.uri] = w
        return w

    def load(self) -> None:  # the Follower loads; nothing to do at startup
        return None

    def apply(self, snap: Snapshot, models: dict[str, Variant]) -> None:
        """Install ``snap`` using the models loaded so far (others stay unroutable)."""
        ready: dict[str, Variant] = {}
        for name, v in snap.variants.items():
            m = models.get(v.pinned_uri)
            if m is not None:
                ready[name] = self._named(m, name)
        if CHAMPION not in ready and CHAMPION in self.variants:
            ready[CHAMPION] = self.variants[CHAMPION]  # keep serving until the new one loads
        now = time.monotonic()
        for name in self.variants.keys() - ready.keys():
            self._draining.setdefault(name, now + self.cfg.endpoint.drain_s)
        for name in ready:
            self._draining.pop(name, None)
        weights = {n: snap.variants[n].weight for n in ready if n in snap.variants}
        if snap.breaker_tripped or self.pending_trip is not None or sum(weights.values()) <= 0:
            weights = {CHAMPION: 1.0} if CHAMPION in ready else {}
        self._sync_breaker(snap)
        self.variants = {**{n: self.variants[n] for n in self._draining if n in self.variants},
                         **ready}
        if weights:
            self.table = RoutingTable.from_weights(weights)
            self.configured = snap.weights()
        if CHAMPION in ready:
            champ = ready[CHAMPION].spec
            self.names, self.categorical = frozenset(champ.names), frozenset(champ.categorical)
        self.has_remote = any(v.is_remote for v in ready.values())
        self.uris = {n: v.pinned_uri for n, v in snap.variants.items()}
        self.salt = snap.salt
        self.exp_id = (snap.experiment_id if snap.collecting and snap.experiment_id
                       else f"endpoint:{self.endpoint}")
        self.shadow = snap.shadow
        if self.shadow and self.shadow_scorer._thread is None:
            self.shadow_scorer.start()
        self.control_version = snap.version
        self.metrics.set_weights(self.table.as_dict(), self.breaker.tripped)

    def _named(self, model: Variant, name: str) -> Variant:
        """``model`` under ``name`` (one object per pair, so metrics and workers stay put)."""
        if model.name == name:
            return model
        key = (name, model.uri)
        if key not in self._renamed:
            self._renamed[key] = dataclasses.replace(model, name=name)
        return self._renamed[key]

    def _sync_breaker(self, snap: Snapshot) -> None:
        if snap.breaker_tripped and not self.breaker.tripped:
            reason = snap.breaker_reason or "tripped on another replica"
            self.breaker.trip = Trip(reason, time.time(), 0, 0.0, 0.0)
        elif not snap.breaker_tripped and self.breaker.tripped and self.pending_trip is None:
            self.breaker.reset()

    def expire_drained(self) -> None:
        now = time.monotonic()
        gone = [n for n, t in self._draining.items() if t <= now]
        if gone:
            self.variants = {n: v for n, v in self.variants.items() if n not in gone}
            for n in gone:
                del self._draining[n]
            live = {v.uri for v in self.variants.values()}
            for uri in [u for u in self._workers if u not in live]:
                self._workers.pop(uri).close()

    def routable(self) -> dict[str, str]:
        """Variant -> pinned URI of what this replica routes to now (not the draining ones)."""
        return {n: v.uri for n, v in self.variants.items() if n not in self._draining}

    def _on_trip(self, trip: Trip) -> None:
        """Champion-only here at once; the Follower tells every other replica."""
        log.error("guardrail breaker tripped: %s", trip.reason)
        self.pending_trip = trip
        if CHAMPION in self.variants:
            self.table = RoutingTable.from_weights({CHAMPION: 1.0})
        self.metrics.set_weights(self.table.as_dict(), True)
        self.event("breaker", trip.as_dict())
        if self._wake is not None:
            self._wake.set()

    def set_weights(self, *args: Any, **kwargs: Any) -> dict:
        raise PermissionError("an endpoint's weights live in its control state: use "
                              "`abx endpoint weights` or POST /admin/weights")

    def status(self) -> dict:
        st = super().status()
        st.update(endpoint=self.endpoint, control_version=self.control_version,
                  routable=self.routable(), draining=sorted(self._draining))
        return st


class Follower:
    """The replica's control loop: poll, load in the background, apply, heartbeat."""

    def __init__(self, cfg: Config, router: EndpointRouter, control: ControlStore,
                 replica_id: str, url: str):
        self.cfg, self.router, self.control = cfg, router, control
        self.name = cfg.endpoint.name
        self.replica_id, self.url = replica_id, url
        self.models: dict[str, Variant] = {}
        self.loading: set[str] = set()
        self.failed: dict[str, str] = {}
        self.applied = -1
        self.applied_at = 0.0
        self.started_at = time.time()
        self._dirty = True
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._last_beat = 0.0
        router._wake = self._wake
        self._thread = threading.Thread(target=self._run, name="abx-control", daemon=True)

    def start(self) -> Follower:
        self.control.record(self.name, "replica_start", self.replica_id,
                            {"url": self.url, "pid": os.getpid()})
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(10)
        try:
            self.control.forget_replica(self.name, self.replica_id)
            self.control.record(self.name, "replica_stop", self.replica_id, {"url": self.url})
        except Exception as exc:  # the store may be gone at shutdown; nothing to keep
            log.warning("could not deregister replica %s: %s", self.replica_id, exc)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception as exc:  # a store hiccup: keep serving what we have, retry
                log.warning("control poll failed: %s", exc)
                self._wake.wait(1.0)
            self._wake.wait(self.cfg.endpoint.poll_interval_s)
            self._wake.clear()

    def step(self) -> None:
        """One iteration: report a local trip, apply a new version, expire drained, heartbeat."""
        trip = self.router.pending_trip
        if trip is not None:
            self.control.trip_breaker(self.name, trip.reason, self.replica_id, trip.as_dict())
            self.router.pending_trip = None
        version = self.control.version(self.name)
        changed = version != self.applied or self._dirty
        if changed:
            self._dirty = False
            snap = self.control.snapshot(self.name)
            self._start_loads(snap)
            with self._lock:
                self.router.apply(snap, self.models)
                self._forget_unused(snap)
            if snap.version != self.applied:
                self.applied, self.applied_at = snap.version, time.time()
        self.router.expire_drained()
        if changed or time.time() - self._last_beat >= self.cfg.endpoint.heartbeat_s:
            self._beat()

    def _beat(self) -> None:
        self._last_beat = time.time()
        self.control.heartbeat(self.name, self.replica_id, {
            "url": self.url, "pid": os.getpid(), "started_at": self.started_at,
            "applied_version": self.applied, "applied_at": self.applied_at,
            "ready": self.router.routable(), "pending_rows": self.router.writer.pending()})

    def _start_loads(self, snap: Snapshot) -> None:
        for v in sorted(snap.variants.values(), key=lambda v: v.name != CHAMPION):
            key = v.pinned_uri
            if key in self.models or key in self.loading or key in self.failed:
                continue
            self.loading.add(key)
            threading.Thread(target=self._load, args=(v,), name=f"abx-load-{v.name}",
                             daemon=True).start()

    def _forget_unused(self, snap: Snapshot) -> None:
        wanted = {v.pinned_uri for v in snap.variants.values()}
        live = {v.uri for v in self.router.variants.values()}
        for key in list(self.models):
            if key not in wanted and key not in live:
                del self.models[key]
        for key in list(self.failed):
            if key not in wanted:  # asked again later: try again
                del self.failed[key]

    def _load(self, v: VariantState) -> None:
        t0 = time.perf_counter()
        try:
            s = self.cfg.serving  # the same runtime and trust rules as the per-experiment router
            var = load_variant(v.name, v.pinned_uri, frozenset(self.cfg.data.categorical_features),
                               s.runtime, s.trusted_types)
            self._check(var)
            if self.cfg.serving.gc_freeze:  # a loaded model is long-lived: stop rescanning it
                freeze_loaded_heap()
            with self._lock:
                self.models[v.pinned_uri] = var
            self.control.record(self.name, "loaded", self.replica_id, {
                "variant": v.name, "pinned_uri": v.pinned_uri,
                "seconds": round(time.perf_counter() - t0, 3), "path": var.path})
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            log.error("loading %s (%s) failed: %s", v.name, v.pinned_uri, reason)
            self.failed[v.pinned_uri] = reason
            if v.name == CHAMPION and CHAMPION not in self.router.variants:
                self.router.load_error = f"champion {v.pinned_uri}: {reason}"
            try:
                self.control.load_failed(self.name, v.name, v.pinned_uri, self.replica_id,
                                         reason)
            except Exception as exc2:
                log.warning("could not record the failed load: %s", exc2)
        finally:
            self.loading.discard(v.pinned_uri)
            self._dirty = True
            self._wake.set()

    def _check(self, var: Variant) -> None:
        """Same feature contract as the champion, finite probabilities on probe rows (warm-up)."""
        champ = self.router.variants.get(CHAMPION)
        if champ is not None and var.spec.names and (
                set(var.spec.names) != set(champ.spec.names)
                or set(var.spec.categorical) != set(champ.spec.categorical)):
            raise ValueError(f"feature contract differs from the champion's: "
                             f"{sorted(var.spec.names)} vs {sorted(champ.spec.names)}")
        rows = probe_rows(var)
        for _ in range(3):  # warm: first calls pay lazy imports and allocations
            out = [float(p) for p in var.predict(rows)]
        if any(not (math.isfinite(p) and 0.0 <= p <= 1.0) for p in out):
            raise ValueError(f"probe predictions are not probabilities: {out[:3]}")


def probe_rows(var: Variant) -> list[dict[str, Any]]:
    """Three feature rows the model accepts (fitted categories, small numbers)."""
    from pipeline_components.serving.variants import _known_categories

    cats = _known_categories(var.model) if var.model is not None else {}
    rows = []
    for k in range(3):
        row: dict[str, Any] = {}
        for n in var.spec.names:
            if n in var.spec.categorical:
                values = cats.get(n) or ["__probe__"]
                row[n] = str(values[k % len(values)])
            else:
                row[n] = float(k) - 0.5
        rows.append(row)
    return rows
