"""Bounded loopback load generators: wrk (preferred) or an httpx/asyncio fallback.

Both send POSTs over ``connections`` keep-alive connections for ``duration`` seconds and return
requests/s, p50/p99 latency (ms), the number of completed requests and non-2xx answers.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_LUA = """
counter = 0
local feats = [==[%s]==]
request = function()
  counter = counter + 1
  local body = '{"unit_id":"u' .. counter .. '","features":' .. feats .. '}'
  return wrk.format("POST", "%s", {["Content-Type"] = "application/json"}, body)
end
"""
_STATIC_LUA = """
wrk.method = "POST"
wrk.body = [==[%s]==]
wrk.headers["Content-Type"] = "application/json"
"""


@dataclass(frozen=True)
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    tool: str
    cpu_ms: float = 0.0  # server CPU per answered request (filled by the runner)


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        raise ValueError(f"cannot parse wrk latency {text!r}")
    return float(m[1]) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m[2]]


def run_wrk(url: str, path: str, features: dict[str, Any] | None, static_body: str | None,
            duration: int, connections: int) -> Result:
    """``features``: a unit id per request is generated; ``static_body``: sent as is."""
    script = (_STATIC_LUA % static_body) if static_body else (_LUA % (json.dumps(features), path))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", f.name,
           url + path]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60).stdout
    Path(f.name).unlink()
    pct = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    non = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return Result(rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]),
                  p50_ms=_ms(pct["50"]), p99_ms=_ms(pct["99"]),
                  requests=int(re.search(r"(\d+) requests in", out)[1]),
                  non_2xx=int(non[1]) if non else 0, tool="wrk")


async def _httpx_load(url: str, bodies: Any, duration: float, connections: int) -> Result:
    import httpx

    lat: list[float] = []
    bad = 0
    stop = time.perf_counter() + duration
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=connections)) as c:

        async def worker(k: int) -> None:
            nonlocal bad
            i = k
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                r = await c.post(url, content=bodies(i),
                                 headers={"content-type": "application/json"})
                lat.append((time.perf_counter() - t0) * 1000)
                bad += r.status_code >= 300
                i += connections

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(connections)))
        elapsed = time.perf_counter() - t0
    lat.sort()
    return Result(len(lat) / elapsed, lat[len(lat) // 2], lat[int(len(lat) * 0.99)], len(lat),
                  bad, "httpx")


def run(url: str, path: str, features: dict[str, Any] | None, static_body: str | None,
        duration: int, connections: int) -> Result:
    """wrk when installed, else the httpx fallback (which costs client CPU on the same cores)."""
    if shutil.which("wrk"):
        return run_wrk(url, path, features, static_body, duration, connections)
    if static_body:
        def bodies(i: int) -> bytes:
            return static_body.encode()
    else:
        def bodies(i: int) -> bytes:
            return json.dumps({"unit_id": f"u{i}", "features": features}).encode()
    return asyncio.run(_httpx_load(url + path, bodies, duration, connections))
