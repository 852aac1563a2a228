"""Per-variant model workers: model calls off the event loop, coalesced, with a timeout.

Each loaded variant gets one ``VariantWorker``: a thread that takes every request waiting for that
variant (up to ``max_rows`` rows) and scores them in one model call (``score_fn``: the seam that
calls a variant's model, ``Router.call``), then hands each request its own slice. So

- the event loop never runs a model: it parses, routes and logs while models compute;
- coalescing is per variant: while the champion scores one batch, its next batch gathers, and a
  slow challenger delays only the requests assigned to it, never champion-only traffic;
- a call that exceeds the variant's timeout raises ``VariantTimeout`` to its requests (the router
  falls back to the champion and records a breaker event); while such a call still occupies the
  thread, new requests fail fast with ``VariantStuck`` instead of queueing behind a hung model.

A model that holds the GIL in pure Python can still slow the whole process; a remote variant (its
own process) is the isolation for that.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

Rows = Sequence[Mapping[str, Any]]
ScoreFn = Callable[[Any, list[Mapping[str, Any]]], Any]


class VariantTimeout(TimeoutError):
    """The variant did not answer within its timeout."""


class VariantStuck(RuntimeError):
    """The variant is still running a call that already timed out: refused without waiting."""


class VariantWorker:
    """One thread scoring one variant's pending requests in coalesced calls."""

    def __init__(self, variant: Any, score_fn: ScoreFn, timeout_s: float, max_rows: int,
                 coalesce: bool = True):
        self.variant = variant
        self.score_fn = score_fn
        self.timeout_s = timeout_s
        self.max_rows = max_rows
        self.coalesce = coalesce
        self._pending: deque[tuple[Rows, asyncio.Future[Any], asyncio.AbstractEventLoop]] = deque()
        self._cond = threading.Condition()
        self._busy_since: float | None = None
        self._stop = False
        self.calls = 0
        self.requests = 0
        self.timeouts = 0
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"abx-model-{variant.name}")
        self._thread.start()

    @property
    def stuck(self) -> bool:
        since = self._busy_since
        return since is not None and time.monotonic() - since > self.timeout_s

    async def score(self, rows: Rows) -> np.ndarray:
        """Predictions for ``rows`` (one request's group) within the timeout.

        Raises:
            VariantStuck: a timed-out call still occupies the variant.
            VariantTimeout: no answer within ``timeout_s``.
            Exception: whatever the model raised.
        """
        if self.stuck:
            raise VariantStuck(f"variant {self.variant.name!r} is still busy with a call that "
                               f"exceeded its {self.timeout_s:g} s timeout")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        with self._cond:
            self._pending.append((rows, fut, loop))
            self._cond.notify()
        try:
            return await asyncio.wait_for(fut, self.timeout_s)
        except TimeoutError:
            self.timeouts += 1
            raise VariantTimeout(f"variant {self.variant.name!r} did not answer within "
                                 f"{self.timeout_s:g} s") from None

    def _take(self) -> list[tuple[Rows, asyncio.Future[Any], asyncio.AbstractEventLoop]]:
        batch: list[tuple[Rows, asyncio.Future[Any], asyncio.AbstractEventLoop]] = []
        n = 0
        while self._pending:
            rows, fut, loop = self._pending[0]
            if fut.done():  # timed out while waiting: nobody wants the answer
                self._pending.popleft()
                continue
            if batch and (not self.coalesce or n + len(rows) > self.max_rows):
                break
            batch.append(self._pending.popleft())
            n += len(rows)
        return batch

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                batch = self._take()
                if not batch:
                    continue
                self._busy_since = time.monotonic()
            flat = [r for rows, _, _ in batch for r in rows]
            try:
                out, err = np.asarray(self.score_fn(self.variant, flat)), None
            except Exception as exc:  # handed to each request; the router decides what follows
                out, err = None, exc
            self._busy_since = None
            self.calls += 1
            self.requests += len(batch)
            batch[0][2].call_soon_threadsafe(_resolve, batch, out, err)

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()


def _resolve(batch: list[tuple[Rows, asyncio.Future[Any], Any]], out: np.ndarray | None,
             err: BaseException | None) -> None:
    start = 0
    for rows, fut, _ in batch:
        if not fut.done():
            if err is not None:
                fut.set_exception(err)
            else:
                assert out is not None
                fut.set_result(out[start:start + len(rows)])
        start += len(rows)
