"""Variants isolated from each other, against a real `abx serve` process: a challenger that
sleeps (fault injection in its model call) times out into the champion's answer, counts as a
breaker event, and champion traffic is answered while the challenger still sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx

from pipeline_components.config import Config
from pipeline_components.deploy import LocalBackend, RouterClient
from pipeline_components.serving.routing import assign_variant
from pipeline_components.serving.testing import TEST_TOKEN
from pipeline_components.store import make_engine, predictions, read_frame

W = {"champion": 0.5, "challenger": 0.5}


def _units(salt: str, variant: str, n: int) -> list[str]:
    found = (f"iso-{i}" for i in range(10_000))
    return [u for u in found if assign_variant(u, salt, W) == variant][:n]


async def _scenario(url: str, slow: str, fast: list[str], feats: dict[str, Any]) -> dict:
    done: list[str] = []
    async with httpx.AsyncClient(base_url=url, timeout=60.0) as c:

        async def one(unit: str) -> dict:
            r = await c.post("/predict", json={"unit_id": unit, "features": feats})
            done.append(unit)
            return {"unit": unit, "code": r.status_code, **r.json()}

        first = asyncio.create_task(one(slow))
        await asyncio.sleep(0.3)  # the challenger call is now sleeping in its thread
        champs = await asyncio.gather(*(one(u) for u in fast))
        slow_answer = await first
        again = await one(slow)  # the challenger thread is still busy: refused without waiting
    return {"order": done, "champs": champs, "slow": slow_answer, "again": again}


def test_sleeping_challenger_never_delays_the_champion(
    make_cfg: Callable[..., Config], rows: list[dict[str, Any]]
) -> None:
    cfg = make_cfg({"experiment.id": "iso", "serving.weights": W,
                    "faults.challenger_delay_s": 12.0,
                    "serving.variant_timeouts_s": {"challenger": 3.0},
                    "serving.guardrails.min_requests": 2})
    backend = LocalBackend()
    dep = backend.start(cfg)
    try:
        slow = _units(cfg.salt, "challenger", 1)[0]
        fast = _units(cfg.salt, "champion", 30)
        got = asyncio.run(_scenario(dep.url, slow, fast, rows[0]))
        with RouterClient(dep.url, TEST_TOKEN) as c:
            st = c.status()
    finally:
        backend.stop(dep)
    # Every champion answer arrived while the challenger call was still sleeping.
    assert set(got["order"][: len(fast)]) == set(fast)
    assert all(a["code"] == 200 and a["status"] == "ok" and a["variant"] == "champion"
               for a in got["champs"])
    # The challenger's requests got the champion's answer, not an error.
    for a in (got["slow"], got["again"]):
        assert a["code"] == 200 and a["status"] == "fallback" and a["model_version"] == "1"
        assert a["variant"] == "challenger" and a["prediction"] is not None
    # One timeout only: the second challenger request was refused at once (the thread was still
    # busy with the timed-out call), it did not queue and time out behind the sleeper.
    assert st["timeouts"]["challenger"] == 1 and st["breaker"]["tripped"]
    # Latency is per request: the champion rows do not carry the challenger's wait.
    df = read_frame(make_engine(cfg.store_url), predictions, "iso").set_index("request_id")
    assert df.loc[got["slow"]["request_id"], "latency_ms"] >= 3000.0
    champ_ms = df.loc[[a["request_id"] for a in got["champs"]], "latency_ms"]
    assert (champ_ms < 3000.0).all()
