"""Shadow scoring: the champion answers, every challenger scores the same rows in the background.

Served requests hand their rows to a bounded queue; one thread scores them in batches (one model
call per batch, so shadow costs little CPU) and logs each as ``served=False``. The breaker sees
shadow calls too, so a failing challenger is caught before it ever serves. A full queue drops the
shadow score (counted), never the user's request.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pipeline_components.serving.routing import CHAMPION

_STOP = object()


class _Breaker(Protocol):
    @property
    def tripped(self) -> bool: ...


class _Writer(Protocol):
    def has_room(self, n: int) -> bool: ...


@dataclass(frozen=True)
class ShadowHooks:
    """What shadow scoring needs from the router, handed over explicitly (no import of it).

    ``variants`` returns the loaded variants by name; ``call`` scores rows on one variant;
    ``record_ok(ms)`` and ``record_error(variant, exc, n)`` feed the metrics and the breaker;
    ``log(ts, row, answer)`` writes an unserved (shadow) prediction row.
    """

    breaker: _Breaker
    writer: _Writer
    variants: Callable[[], Mapping[str, Any]]
    call: Callable[[Any, list[Mapping[str, Any]]], Any]
    record_ok: Callable[[float], None]
    record_error: Callable[[Any, Exception, int], None]
    log: Callable[[float, tuple[str, Mapping[str, Any]], dict], None]


class ShadowScorer:
    """Background challenger scoring for shadow mode."""

    def __init__(self, router: ShadowHooks, max_queue: int = 10_000, max_batch: int = 128):
        self.router = router
        self.q: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self.max_batch = max_batch
        self.dropped = 0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="abx-shadow", daemon=True)
        self._thread.start()

    def submit(self, rows: list[tuple[str, Mapping[str, Any]]], answers: list[dict],
               now: float) -> None:
        if self.router.breaker.tripped:  # a tripped challenger is not worth the CPU
            return
        if not self.router.writer.has_room(len(rows)):  # the log is backed up: shadow yields
            self.dropped += len(rows)
            return
        for row, ans in zip(rows, answers, strict=True):
            try:
                self.q.put_nowait((row, ans["request_id"], now))
            except queue.Full:
                self.dropped += 1

    def _run(self) -> None:
        while True:
            item = self.q.get()
            if item is _STOP:
                return
            batch = [item]
            while len(batch) < self.max_batch:
                try:
                    nxt = self.q.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    self._score(batch)
                    return
                batch.append(nxt)
            self._score(batch)

    def _score(self, batch: list[tuple[tuple[str, Mapping[str, Any]], str, float]]) -> None:
        r = self.router
        feats = [row[1] for row, _, _ in batch]
        for name, var in r.variants().items():
            if name == CHAMPION:
                continue
            t0 = time.perf_counter()
            try:
                preds = r.call(var, feats).tolist()
                ms = (time.perf_counter() - t0) * 1000.0
                status = "ok"
                for _ in batch:
                    r.record_ok(ms)
            except Exception as exc:
                r.record_error(var, exc, len(batch))
                preds, ms, status = [None] * len(batch), 0.0, "error"
            for (row, req_id, ts), p in zip(batch, preds, strict=True):
                ans = {"prediction": p, "variant": name, "model_version": var.model_version,
                       "latency_ms": ms, "status": status, "request_id": req_id}
                r.log(ts, row, ans)  # same request_id: the shadow join key

    def close(self, timeout_s: float = 30.0) -> None:
        """Score whatever is queued, then stop."""
        if self._thread is None:
            return
        self.q.put(_STOP)
        self._thread.join(timeout_s)
