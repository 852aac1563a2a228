"""Steady client traffic against an endpoint, recorded per request (tests and the benchmark).

``Traffic(url, rows).start()`` runs an asyncio client in a thread: ``concurrency`` workers send
``/predict`` back to back (optionally paced to ``rate_per_s``) until ``stop()``, and every answer is
kept as a ``Shot`` (send and answer times, HTTP status, variant, model version). Failed means
anything but HTTP 200 or a transport error: what a user would call a failed request.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Shot:
    sent: float
    done: float
    code: int  # HTTP status; 0: transport error
    variant: str | None
    model_version: str | None
    status: str | None


class Traffic:
    """A background load generator over real HTTP (one thread, one asyncio loop)."""

    def __init__(self, url: str, rows: list[dict[str, Any]], *, concurrency: int = 8,
                 rate_per_s: float | None = None, units: int = 1000, max_requests: int = 200_000):
        self.url = url.rstrip("/")
        self.rows = rows
        self.concurrency = concurrency
        self.rate = rate_per_s
        self.units = units
        self.max_requests = max_requests
        self.shots: list[Shot] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def start(self) -> Traffic:
        self._thread.start()
        return self

    def stop(self) -> list[Shot]:
        self._stop.set()
        self._thread.join(60)
        return self.shots

    async def _main(self) -> None:
        import httpx

        limits = httpx.Limits(max_connections=self.concurrency)
        counter = iter(range(self.max_requests))
        interval = self.concurrency / self.rate if self.rate else 0.0
        async with httpx.AsyncClient(base_url=self.url, timeout=30.0, limits=limits) as client:

            async def worker() -> None:
                for i in counter:
                    if self._stop.is_set():
                        return
                    t0 = time.time()
                    await self._one(client, i)
                    if interval:
                        await asyncio.sleep(max(0.0, interval - (time.time() - t0)))

            await asyncio.gather(*(worker() for _ in range(self.concurrency)))

    async def _one(self, client: Any, i: int) -> None:
        import httpx

        body = {"unit_id": f"unit-{i % self.units}", "features": self.rows[i % len(self.rows)]}
        t0 = time.time()
        try:
            r = await client.post("/predict", json=body)
            js = r.json() if r.status_code == 200 else {}
            shot = Shot(t0, time.time(), r.status_code, js.get("variant"),
                        js.get("model_version"), js.get("status"))
        except (httpx.HTTPError, ValueError):
            shot = Shot(t0, time.time(), 0, None, None, None)
        self.shots.append(shot)


def failed(shots: list[Shot]) -> list[Shot]:
    return [s for s in shots if s.code != 200]
