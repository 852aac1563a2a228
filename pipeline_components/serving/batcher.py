"""Opportunistic micro-batching of concurrent /predict calls on the event loop.

Handlers park their rows here and await a future; one consumer task scores everything that is
pending in a single ``Router.predict_many`` call (one sklearn call per variant), then yields so
the loop can parse the requests that arrived meanwhile. At low load a batch is one request and
nothing waits; under load the batch grows with the backlog, which is exactly when sklearn's
~1 ms per-call floor would otherwise cap throughput. No timer, so no added latency.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline_components.serving.router import Router

Rows = list[tuple[str, Mapping[str, Any]]]


class MicroBatcher:
    """Coalesce concurrent requests into one scoring call (at most ``max_rows`` rows)."""

    def __init__(self, router: Router, max_rows: int):
        self.router = router
        self.max_rows = max_rows
        self._pending: list[tuple[Rows, str | None, asyncio.Future[list[dict]]]] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self.calls = 0
        self.requests = 0

    async def submit(self, rows: Rows, forced: str | None) -> list[dict]:
        if self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run())
        fut: asyncio.Future[list[dict]] = asyncio.get_running_loop().create_future()
        self._pending.append((rows, forced, fut))
        assert self._wake is not None
        self._wake.set()
        return await fut

    def _take(self) -> list[tuple[Rows, str | None, asyncio.Future[list[dict]]]]:
        n, k = 0, 0
        while k < len(self._pending) and (k == 0 or n + len(self._pending[k][0]) <= self.max_rows):
            n += len(self._pending[k][0])
            k += 1
        batch, self._pending = self._pending[:k], self._pending[k:]
        return batch

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = self._take()
                self.calls += 1
                self.requests += len(batch)
                try:
                    results = self.router.predict_many([(r, f) for r, f, _ in batch])
                except Exception as exc:  # a bug, not a model error (those become fallbacks)
                    for _, _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                else:
                    for (_, _, fut), res in zip(batch, results, strict=True):
                        if not fut.done():
                            fut.set_result(res)
                await asyncio.sleep(0)  # let the loop parse what arrived while we scored

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
