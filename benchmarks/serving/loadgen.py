"""A closed-loop HTTP/1.1 load generator whose latencies can be checked, on raw asyncio sockets.

Each of ``connections`` keep-alive connections sends one POST, reads the whole answer, records
the request's latency and sends the next one at once (no think time). In such a closed loop
Little's law ties the figures together: requests in flight = throughput x mean latency, and in
flight is ``connections`` (minus the client's own gap between an answer and the next request).
So ``mean latency ~ connections / throughput``; a generator that reports more latency than that is
measuring something other than the server (wrk with a Lua body script did, see issue 15), and one
that reports much less is not keeping its connections busy (the client is the bottleneck).
``Result.little`` is ``mean latency x throughput / connections``; ``Result.ok`` says whether it is
within ``LITTLE_TOLERANCE`` of 1, and the runner prints a flag next to every run that is not.

The client is a few dozen lines on ``asyncio`` streams (uvloop when installed): no HTTP library
on the path, so its CPU per request (also reported) stays small next to the servers'.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

LITTLE_TOLERANCE = (0.85, 1.05)  # accepted range of mean latency x throughput / connections


@dataclass(frozen=True)
class Result:
    """One measured level: throughput, latency quantiles and the closed-loop check."""

    connections: int
    rps: float
    mean_ms: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    requests: int
    non_2xx: int
    errors: int
    client_cpu_ms: float  # load generator CPU per request (it shares the cores with the server)
    cpu_ms: float = 0.0  # server CPU per answered request (filled by the runner)

    @property
    def little(self) -> float:
        """mean latency x throughput / connections: 1.0 for a correct closed loop."""
        return self.mean_ms / 1000.0 * self.rps / self.connections

    @property
    def ok(self) -> bool:
        lo, hi = LITTLE_TOLERANCE
        return lo <= self.little <= hi and self.non_2xx == 0 and self.errors == 0


class HttpError(RuntimeError):
    """The server closed the connection or sent something that is not an HTTP/1.1 answer."""


def request_bytes(host: str, port: int, path: str, body: bytes) -> bytes:
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> int:
    """Read one whole answer (Content-Length or chunked); returns the status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    at = lower.find(b"content-length:")
    if at >= 0:
        end = lower.index(b"\r\n", at)
        await reader.readexactly(int(lower[at + 15:end]))
    elif b"transfer-encoding: chunked" in lower:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        raise HttpError(f"answer without a length: {head[:200]!r}")
    return status


async def _connection(host: str, port: int, reqs: list[bytes], k: int, state: dict,
                      lat: list[float]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    i = k
    try:
        while not state["stop"]:
            t0 = time.perf_counter()
            writer.write(reqs[i % len(reqs)])
            status = await read_response(reader)
            t1 = time.perf_counter()
            if state["measuring"]:  # completed inside the window (the loop ran since warm-up)
                lat.append(t1 - t0)
                state["non_2xx"] += not 200 <= status < 300
            i += state["connections"]
    except (OSError, asyncio.IncompleteReadError, HttpError):
        state["errors"] += 1
    finally:
        writer.close()


async def _run(host: str, port: int, reqs: list[bytes], connections: int, warmup_s: float,
               duration_s: float) -> Result:
    state: dict[str, Any] = {"stop": False, "measuring": False, "t0": 0.0,
                             "connections": connections, "non_2xx": 0, "errors": 0}
    lat: list[float] = []
    tasks = [asyncio.ensure_future(_connection(host, port, reqs, k, state, lat))
             for k in range(connections)]
    await asyncio.sleep(warmup_s)
    state["t0"], state["measuring"] = time.perf_counter(), True
    c0 = time.process_time()
    await asyncio.sleep(duration_s)
    t_end = time.perf_counter()
    state["measuring"] = False
    cpu = time.process_time() - c0
    state["stop"] = True
    await asyncio.wait(tasks, timeout=30)
    # Completions inside the window are counted, whenever they started: the loop has been busy
    # since the warm-up, so their latencies add up to ~connections x window (unbiased for Little).
    a = np.array(lat) * 1000.0
    n = len(a)
    elapsed = t_end - state["t0"]
    if n == 0:
        return Result(connections, 0.0, 0, 0, 0, 0, 0, 0, state["non_2xx"], state["errors"] or 1,
                      0.0)
    q = np.quantile(a, [0.5, 0.99, 0.999])
    return Result(connections, n / elapsed, float(a.mean()), float(q[0]), float(q[1]),
                  float(q[2]), float(a.max()), n, state["non_2xx"], state["errors"],
                  cpu * 1000.0 / n)


def run(url: str, path: str, bodies: Callable[[int], bytes], connections: int,
        duration_s: float, warmup_s: float = 0.5, distinct: int = 512) -> Result:
    """Measure ``url`` + ``path`` for ``duration_s`` after ``warmup_s`` of the same load.

    Args:
        bodies: request ``i`` -> JSON body; ``distinct`` of them are pre-built and cycled.
    """
    hostport = url.split("://", 1)[1].rstrip("/")
    host, port = hostport.rsplit(":", 1)
    reqs = [request_bytes(host, int(port), path, bodies(i)) for i in range(distinct)]
    try:
        import uvloop

        runner: Callable[..., Result] = uvloop.run
    except ImportError:  # plain asyncio works too, at a little more client CPU
        runner = asyncio.run
    return runner(_run(host, int(port), reqs, connections, warmup_s, duration_s))
