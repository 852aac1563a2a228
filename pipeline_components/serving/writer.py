"""Background batched writer that cannot be poisoned and loses nothing it acknowledged.

The request path appends to one queue (a lock, a sequence number, a deque push; in durable mode
also one ``write`` to the spool, serving/spool.py); one thread writes batches of up to
``flush_max_rows`` rows in one transaction each, every ``flush_interval_s`` or sooner when a batch
is waiting.

- **Back-pressure, never a silent drop.** ``has_room`` is false once ``max_pending`` rows wait; the
  API then answers 503 with ``Retry-After`` *before* scoring, so no answer is given whose row could
  not be kept. (Rows of requests already admitted are always queued: the bound is soft by at most
  the requests in flight.)
- **A bad row cannot block good ones.** A failed batch is told apart: if the store is unreachable
  (its error is not about the data and a ``SELECT 1`` fails) the rows stay queued in order and the
  write is retried with backoff; otherwise the batch is split in halves, recursively, until the
  rows the store refuses are isolated. Each goes to ``dead_letters`` with the database's reason;
  the others are written.
- **No payloads in logs.** Messages carry counts, tables and the error class with its first line;
  the engine hides bound parameters (store.make_engine).
- **Shutdown within a deadline.** ``close(timeout_s)`` drains; what it cannot write in time goes to
  the spool and is replayed by the next router on it (exactly once: see spool.py).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Table, select, text, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    SQLAlchemyError,
    StatementError,
)

from pipeline_components.serving.spool import Item, Spool
from pipeline_components.store import (
    dead_letters,
    events,
    feedback,
    insert_statement,
    predictions,
    writer_checkpoints,
)

log = logging.getLogger("abx.serving.writer")
TABLES: dict[str, Table] = {"predictions": predictions, "feedback": feedback, "events": events}


class StoreDown(Exception):
    """The store is unreachable; ``remaining`` are the rows not written, in order."""

    def __init__(self, remaining: list[Item], cause: BaseException):
        super().__init__(reason(cause))
        self.remaining = remaining


def reason(exc: BaseException) -> str:
    """``ErrorClass: first line`` of the driver's message (its DETAIL lines may quote a row)."""
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    first = lines[0] if lines else ""
    msg = f"{type(orig).__name__}: {first[:300]}"
    return msg.encode("ascii", "backslashreplace").decode()


def _data_fault(exc: BaseException) -> bool:
    """True when the error is about the rows: a constraint or type the store refused, or a value
    the driver could not even encode (e.g. UnicodeEncodeError, raised unwrapped)."""
    if isinstance(exc, (IntegrityError, DataError)):
        return True
    if isinstance(exc, StatementError):
        return not isinstance(exc, DBAPIError)
    return not isinstance(exc, SQLAlchemyError)


class BatchWriter:
    """Thread-backed batched writer to the prediction store tables."""

    def __init__(self, engine: Engine, flush_interval_s: float = 0.2, flush_max_rows: int = 500,
                 max_pending: int = 100_000, spool: Spool | None = None, durable: bool = False):
        if durable and spool is None:
            raise ValueError("durable mode needs a spool")
        self.engine = engine
        self.flush_interval_s = flush_interval_s
        self.flush_max_rows = flush_max_rows
        self.max_pending = max_pending
        self.spool = spool
        self.durable = durable
        self._q: deque[Item] = deque()
        self._inflight: list[Item] = []
        self._lock = threading.Lock()
        self._seq = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._flush_lock = threading.Lock()
        self.written: dict[str, int] = dict.fromkeys(TABLES, 0)
        self.dead_lettered = 0
        self.failures = 0
        self.replayed = 0
        self.spilled = 0
        self._thread = threading.Thread(target=self._run, name="abx-writer", daemon=True)

    def start(self) -> BatchWriter:
        """Queue what the spool holds beyond the store's checkpoint, then start the thread."""
        if self.spool is not None:
            self._recover(self.spool)
        self._thread.start()
        return self

    def _recover(self, spool: Spool) -> None:
        with self.engine.connect() as conn:
            q = select(writer_checkpoints.c.seq).where(writer_checkpoints.c.wal_id == spool.wal_id)
            done = int(conn.execute(q).scalar() or 0)
        items = [it for it in spool.replay() if it[0] > done]
        self._seq = max(done, spool.last_seq())
        self._q.extend(items)
        self.replayed = len(items)
        spool.prune(done)
        if items:
            log.warning("replaying %d rows from spool %s (not yet in the store)", len(items),
                        spool.slot)
        elif spool.unclean and not self.durable:
            log.warning("the previous router on spool %s did not shut down cleanly: rows it had "
                        "queued but not written are lost (serving.durable: true prevents that)",
                        spool.slot)

    # ------------------------------------------------------------------ request path
    def put(self, table: str, row: Mapping[str, Any]) -> None:
        """Queue one row; in durable mode it is in the spool file when this returns."""
        if table not in TABLES:
            raise KeyError(f"unknown table {table!r}")
        with self._lock:
            self._seq += 1
            item = (self._seq, table, row)
            if self.durable:
                assert self.spool is not None
                self.spool.append([item])
            self._q.append(item)
        if len(self._q) >= self.flush_max_rows:
            self._wake.set()

    def has_room(self, n: int = 1) -> bool:
        """False when ``n`` more rows would exceed ``max_pending`` (the API answers 503)."""
        return self.pending() + n <= self.max_pending

    def pending(self) -> int:
        return len(self._q) + len(self._inflight)

    # ------------------------------------------------------------------ writing
    def flush(self) -> int:
        """Write everything queued now; returns rows written. Safe from any thread.

        Raises:
            StoreDown: the store is unreachable (the unwritten rows are queued again, in order).
        """
        total = 0
        with self._flush_lock:
            while self._q:
                items = [self._q.popleft() for _ in range(min(len(self._q), self.flush_max_rows))]
                self._inflight = items
                try:
                    total += self._write(items)
                except StoreDown as down:
                    self._q.extendleft(reversed(down.remaining))
                    self.failures += 1
                    log.warning("prediction store unavailable (%s); %d rows kept for retry",
                                down, self.pending())
                    raise
                finally:
                    self._inflight = []
        return total

    def _write(self, items: list[Item]) -> int:
        """Commit ``items`` in order, isolating rows the store refuses by bisection."""
        written = 0
        stack = [items]
        while stack:
            part = stack.pop()
            try:
                self._commit(part)
                written += len(part)
                continue
            except Exception as exc:  # sorted out below: outage, or rows the store refuses
                err = exc
            data_fault = _data_fault(err)
            if not data_fault and not self._store_up():
                raise StoreDown(part + [it for p in reversed(stack) for it in p], err) from err
            if len(part) > 1:
                mid = len(part) // 2
                stack += [part[mid:], part[:mid]]  # left half first: commits stay in order
                continue
            if not data_fault:  # reachable store, unexplained failure: one more try
                try:
                    self._commit(part)
                    written += 1
                    continue
                except Exception as exc:
                    err = exc
            try:
                self._dead_letter(part[0], err, stack)
            except StoreDown:
                raise
            except Exception as exc:  # e.g. the dead-letter file is not writable: keep the row
                raise StoreDown(part + [it for p in reversed(stack) for it in p], exc) from exc
        return written

    def _commit(self, part: list[Item]) -> None:
        by_table: dict[str, list[Mapping[str, Any]]] = {}
        for _, table, row in part:
            by_table.setdefault(table, []).append(row)
        with self.engine.begin() as conn:
            for table, rows in by_table.items():
                conn.execute(insert_statement(self.engine, TABLES[table]), rows)
            self._checkpoint(conn, part[-1][0])
        for table, rows in by_table.items():
            self.written[table] += len(rows)
        self._prune(part[-1][0])

    def _prune(self, seq: int) -> None:
        if self.spool is None:
            return
        try:
            self.spool.prune(seq)
        except OSError as exc:  # a segment we cannot delete is replayed and skipped later
            log.warning("spool prune failed: %s", exc)

    def _checkpoint(self, conn: Connection, seq: int) -> None:
        if self.spool is None:
            return
        wc = writer_checkpoints
        res = conn.execute(update(wc).where(wc.c.wal_id == self.spool.wal_id)
                           .values(seq=seq, ts=time.time()))
        if res.rowcount == 0:
            conn.execute(wc.insert().values(wal_id=self.spool.wal_id, seq=seq, ts=time.time()))

    def _dead_letter(self, item: Item, err: BaseException, stack: list[list[Item]]) -> None:
        seq, table, row = item
        why = reason(err)
        record = {"experiment_id": str(row.get("experiment_id", ""))[:128]
                  .encode("ascii", "backslashreplace").decode(),
                  "ts": time.time(), "source_table": table, "reason": why,
                  "payload": json.dumps(row, default=repr, ensure_ascii=True, sort_keys=True)}
        where = "dead_letters"
        try:
            with self.engine.begin() as conn:
                conn.execute(dead_letters.insert(), [record])
                self._checkpoint(conn, seq)
        except Exception as exc:
            if not self._store_up():
                raise StoreDown([item] + [it for p in reversed(stack) for it in p], exc) from exc
            where = self._dead_letter_file(record)  # the store refuses even the record
            try:
                with self.engine.begin() as conn:
                    self._checkpoint(conn, seq)
            except Exception as exc2:
                raise StoreDown([it for p in reversed(stack) for it in p], exc2) from exc2
        self.dead_lettered += 1
        self._prune(seq)
        log.error("store refused a %s row (%s); kept in %s", table, why, where)

    def _dead_letter_file(self, record: Mapping[str, Any]) -> str:
        if self.spool is None:
            return "no place: the row is lost (no spool configured)"
        path = self.spool.slot.parent / "dead_letters.jsonl"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, json.dumps(record, ensure_ascii=True).encode() + b"\n")
        finally:
            os.close(fd)
        return str(path)

    def _store_up(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    def _run(self) -> None:
        backoff = self.flush_interval_s
        while not self._stop.is_set():
            self._wake.wait(backoff)
            self._wake.clear()
            try:
                self.flush()
                backoff = self.flush_interval_s
            except StoreDown:
                backoff = min(backoff * 2, 5.0)
            except Exception as exc:  # keep the thread alive; the rows are still queued
                log.error("writer error: %s", reason(exc))
                backoff = min(backoff * 2, 5.0)

    # ------------------------------------------------------------------ shutdown
    def close(self, timeout_s: float = 30.0) -> None:
        """Drain within ``timeout_s``; rows still unwritten then go to the spool (or, without one,
        are reported as lost in an error line)."""
        deadline = time.monotonic() + timeout_s
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(max(0.0, deadline - time.monotonic()))
        while self.pending() and time.monotonic() < deadline and not self._thread.is_alive():
            try:
                self.flush()
            except Exception:
                time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        left = sorted([*self._inflight, *self._q], key=lambda it: it[0])
        if left:
            self._spill(left)
        if self.spool is not None:
            self.spool.close()

    def _spill(self, left: list[Item]) -> None:
        if self.spool is None:
            log.error("shutdown deadline: %d rows could not be written and are lost "
                      "(no spool configured)", len(left))
            return
        if not self.durable:  # durable rows are in the spool already
            self.spool.append(left)
        self.spilled = len(left)
        log.error("shutdown deadline: %d rows not yet in the store are kept in %s and will be "
                  "written by the next router started on it", len(left), self.spool.slot)
