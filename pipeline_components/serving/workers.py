"""Per-variant model workers: model calls off the event loop, coalesced, with a timeout.

Each loaded variant gets one ``VariantWorker``: a thread that takes every request waiting for that
variant (up to ``max_rows`` rows) and scores them in one model call (``score_fn``: the seam that
calls a variant's model, ``Router.call``), then hands each request its own slice. So

- the event loop never runs a model: it parses, routes and logs while models compute;
- adaptive batching with a latency budget: under load a batch grows while the previous call runs;
  on top of that the worker expects as many requests per call as its previous call carried, if
  that call ended less than ``wait_s`` before the new work was queued (the load that made it is
  still there). When it takes fewer, it waits for the rest, but never longer than ``wait_s``
  after the oldest request of the batch was queued. A lone request (previous call of one
  request, or the worker idle for longer than the window) is scored at once: the window never
  delays it. The expectation is the variant's own, so a challenger with a small share is not
  held back waiting for traffic that goes to the champion. ``stats()`` counts which path each
  call took and its size, so tests and ``/admin/status`` see the batching instead of inferring
  it from times;
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
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

Rows = Sequence[Mapping[str, Any]]
ScoreFn = Callable[[Any, list[Mapping[str, Any]]], Any]
Pending = tuple[Rows, "asyncio.Future[Any]", asyncio.AbstractEventLoop, float]

# How a call's batch was formed (keys of ``VariantWorker.paths``):
ALONE = "alone"  # one request and no more expected: scored at once, no window
QUEUED = "queued"  # several requests queued, no more expected: scored at once
FULL = "full"  # the batch reached max_rows (at take or while waiting)
WAITED = "waited"  # waited for the expected requests; they came within the budget
BUDGET = "budget"  # waited until the latency budget of the oldest request ran out
UNBATCHED = "unbatched"  # coalescing off (serving.micro_batch: false): one request per call
PATHS = (ALONE, QUEUED, FULL, WAITED, BUDGET, UNBATCHED)


class VariantTimeout(TimeoutError):
    """The variant did not answer within its timeout."""


class VariantStuck(RuntimeError):
    """The variant is still running a call that already timed out: refused without waiting."""


class VariantWorker:
    """One thread scoring one variant's pending requests in coalesced calls."""

    def __init__(self, variant: Any, score_fn: ScoreFn, timeout_s: float, max_rows: int,
                 coalesce: bool = True, wait_s: float = 0.0):
        """
        Args:
            max_rows: rows per coalesced call (a single larger request is still one call).
            coalesce: False scores one request per call (``serving.micro_batch: false``).
            wait_s: latency budget of the batching window (``serving.batch_wait_ms``); 0: never
                wait, take what is queued.
        """
        self.variant = variant
        self.score_fn = score_fn
        self.timeout_s = timeout_s
        self.max_rows = max_rows
        self.coalesce = coalesce
        self.wait_s = wait_s if coalesce else 0.0
        self._pending: deque[Pending] = deque()
        self._cond = threading.Condition()
        self._busy_since: float | None = None
        self._last_end = -1e18  # monotonic end of the previous call
        self._last_size = 0  # requests in the previous call
        self._stop = False
        self.calls = 0
        self.requests = 0
        self.timeouts = 0
        self.paths: Counter[str] = Counter()
        self.sizes: Counter[int] = Counter()  # requests per call -> calls
        self.joined = 0  # requests that joined a call while it waited in its window
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
            self._pending.append((rows, fut, loop, time.monotonic()))
            self._cond.notify()
        try:
            return await asyncio.wait_for(fut, self.timeout_s)
        except TimeoutError:
            self.timeouts += 1
            raise VariantTimeout(f"variant {self.variant.name!r} did not answer within "
                                 f"{self.timeout_s:g} s") from None

    def _take(self, batch: list[Pending], n: int) -> int:
        """Move queued requests into ``batch`` while they fit; returns the batch's row count."""
        while self._pending:
            rows, fut = self._pending[0][0], self._pending[0][1]
            if fut.done():  # timed out while waiting: nobody wants the answer
                self._pending.popleft()
                continue
            if batch and (not self.coalesce or n + len(rows) > self.max_rows):
                break
            batch.append(self._pending.popleft())
            n += len(rows)
        return n

    def _gather(self) -> tuple[list[Pending], str] | None:
        """The next batch and how it was formed (called holding the lock); None: stop."""
        while not self._pending and not self._stop:
            self._cond.wait()
        if self._stop:
            return None
        batch: list[Pending] = []
        n = self._take(batch, 0)
        if not batch:
            return [], ALONE
        if not self.coalesce:
            return batch, UNBATCHED
        if n >= self.max_rows or self._pending:  # full, or the next request did not fit
            return batch, FULL
        if self.wait_s <= 0.0 or len(batch) >= self._expected(batch):
            return batch, (ALONE if len(batch) == 1 else QUEUED)
        deadline = batch[0][3] + self.wait_s  # the oldest request's budget, not the take time
        taken, want = len(batch), self._expected(batch)
        while True:
            left = deadline - time.monotonic()
            if left <= 0.0:
                path = BUDGET
                break
            self._cond.wait(left)  # score() notifies on every new request
            n = self._take(batch, n)
            if n >= self.max_rows or self._pending:
                path = FULL
                break
            if self._stop or len(batch) >= want:
                path = WAITED
                break
        self.joined += len(batch) - taken
        return batch, path

    def _expected(self, batch: list[Pending]) -> int:
        """Requests this call should carry: the previous call's count while the load that made
        it is still there (it ended within the window before this batch's oldest request was
        queued), else one."""
        recent = batch[0][3] - self._last_end <= self.wait_s
        return self._last_size if recent else 1

    def _run(self) -> None:
        while True:
            with self._cond:
                got = self._gather()
                if got is None:
                    return
                batch, path = got
                if not batch:
                    continue
                self._busy_since = time.monotonic()
            flat = [r for rows, _, _, _ in batch for r in rows]
            try:
                out, err = np.asarray(self.score_fn(self.variant, flat)), None
            except Exception as exc:  # handed to each request; the router decides what follows
                out, err = None, exc
            self._busy_since = None
            self._last_end, self._last_size = time.monotonic(), len(batch)
            self.calls += 1
            self.requests += len(batch)
            self.paths[path] += 1
            self.sizes[len(batch)] += 1
            batch[0][2].call_soon_threadsafe(_resolve, batch, out, err)

    def stats(self) -> dict[str, Any]:
        """Calls, requests, calls per batch-forming path and per batch size (requests/call)."""
        return {"calls": self.calls, "requests": self.requests, "paths": dict(self.paths),
                "joined_while_waiting": self.joined,
                "sizes": {str(k): v for k, v in sorted(self.sizes.items())}}

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()


def _resolve(batch: list[Pending], out: np.ndarray | None, err: BaseException | None) -> None:
    start = 0
    for rows, fut, _, _ in batch:
        if not fut.done():
            if err is not None:
                fut.set_exception(err)
            else:
                assert out is not None
                fut.set_result(out[start:start + len(rows)])
        start += len(rows)
