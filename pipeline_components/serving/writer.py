"""Background batched writer: the request path appends to a queue, one thread writes batches.

Appending costs a deque push (~0.1 µs); the database sees one ``executemany`` per table per
flush (every ``flush_interval_s`` or as soon as ``flush_max_rows`` rows wait). A failed write
keeps its rows and retries, so nothing answered is lost; ``close()`` drains everything, which the
app calls on graceful shutdown after uvicorn has finished in-flight requests.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Table
from sqlalchemy.engine import Engine

from pipeline_components.store import events, feedback, insert_rows, predictions

log = logging.getLogger("abx.serving.writer")
TABLES: dict[str, Table] = {"predictions": predictions, "feedback": feedback, "events": events}


class BatchWriter:
    """Thread-backed batched writer to the prediction store tables."""

    def __init__(self, engine: Engine, flush_interval_s: float = 0.2, flush_max_rows: int = 500):
        self.engine = engine
        self.flush_interval_s = flush_interval_s
        self.flush_max_rows = flush_max_rows
        self._queues: dict[str, deque[Mapping[str, Any]]] = {k: deque() for k in TABLES}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._flush_lock = threading.Lock()
        self.written: dict[str, int] = dict.fromkeys(TABLES, 0)
        self.failures = 0
        self._thread = threading.Thread(target=self._run, name="abx-writer", daemon=True)

    def start(self) -> BatchWriter:
        self._thread.start()
        return self

    def put(self, table: str, row: Mapping[str, Any]) -> None:
        """Queue one row (hot path: no I/O, no lock)."""
        q = self._queues[table]
        q.append(row)
        if len(q) >= self.flush_max_rows:
            self._wake.set()

    def pending(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def flush(self) -> int:
        """Write everything queued now; returns rows written. Safe from any thread."""
        total = 0
        with self._flush_lock:
            for name, q in self._queues.items():
                batch = [q.popleft() for _ in range(len(q))]
                if not batch:
                    continue
                try:
                    total += insert_rows(self.engine, TABLES[name], batch)
                    self.written[name] += len(batch)
                except Exception as exc:  # keep the rows: put them back in front, retry later
                    self.failures += 1
                    q.extendleft(reversed(batch))
                    log.warning("store write of %d %s rows failed: %s", len(batch), name, exc)
                    raise
        return total

    def _run(self) -> None:
        backoff = self.flush_interval_s
        while not self._stop.is_set():
            self._wake.wait(backoff)
            self._wake.clear()
            try:
                self.flush()
                backoff = self.flush_interval_s
            except Exception:
                backoff = min(backoff * 2, 5.0)

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop the thread and drain every queued row (retrying for up to ``timeout_s``)."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        deadline = time.monotonic() + timeout_s
        while self.pending():
            try:
                self.flush()
            except Exception:
                if time.monotonic() > deadline:
                    log.error("giving up: %d rows could not be written", self.pending())
                    return
                time.sleep(0.2)
