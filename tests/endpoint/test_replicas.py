"""Two endpoint replicas on one PostgreSQL control store (a fresh database per test): a change
made through either replica's admin API, or the CLI's control store, reaches both; a breaker
trip on one pins the champion on both; every unit gets the same variant from both."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from pipeline_components.config import Config
from pipeline_components.deploy import LocalBackend
from pipeline_components.serving import operations as ops
from pipeline_components.serving.endpoint_testing import Traffic, failed
from pipeline_components.serving.testing import TEST_TOKEN

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}


def _variants(url: str, rows: list[dict[str, Any]], n: int = 60) -> list[str]:
    body = {"instances": [{"unit_id": f"u{i}", "features": rows[i % len(rows)]}
                          for i in range(n)]}
    return [p["variant"] for p in httpx.post(f"{url}/predict", json=body).json()["predictions"]]


def test_two_replicas_follow_one_control_state(
        make_cfg: Callable[..., Config], rows: list[dict[str, Any]], pg_url: str) -> None:
    cfg = make_cfg({"serving.store_url": pg_url, "endpoint.replicas": 2,
                    "faults.challenger_failure_rate": 1.0})
    backend = LocalBackend()
    ops.ensure_endpoint(cfg, "test")
    a, b = (d.url for d in backend.start_endpoint(cfg))
    try:
        assert len(ops.live_replicas(cfg)) == 2
        # a load through replica A's admin API is loaded and routed by B too
        r = httpx.post(f"{a}/admin/load", headers=AUTH, timeout=120,
                       json={"name": "challenger", "uri": "models:/abx-model/2", "weight": 0.0})
        assert r.status_code == 200, r.text
        version = ops.set_weights(cfg, {"challenger": 0.5}, "test")  # returns once both applied
        assert all(int(rep["applied_version"]) >= version for rep in ops.live_replicas(cfg))
        va, vb = _variants(a, rows), _variants(b, rows)
        assert va == vb and {"champion", "challenger"} <= set(va)  # a pure hash: they agree
        # the challenger fails on every call: B trips, A follows through the control state
        traffic = Traffic(b, rows, concurrency=4, rate_per_s=100).start()
        try:
            deadline = time.monotonic() + 30
            while not ops.status(cfg)["breaker"]["tripped"] and time.monotonic() < deadline:
                time.sleep(0.1)
            ops.wait_applied(cfg, ops.open_control(cfg).version(cfg.endpoint.name))
        finally:
            shots = traffic.stop()
        assert failed(shots) == []
        assert set(_variants(a, rows)) == {"champion"} == set(_variants(b, rows))
        st = httpx.get(f"{a}/admin/status", headers=AUTH).json()
        assert st["breaker"]["tripped"] and st["control"]["breaker"]["tripped"]
        # unload through B: neither replica routes it afterwards
        assert httpx.post(f"{b}/admin/unload", headers=AUTH,
                          json={"name": "challenger"}).status_code == 200
        for url in (a, b):
            routable = httpx.get(f"{url}/admin/status", headers=AUTH).json()["routable"]
            assert list(routable) == ["champion"]
    finally:
        backend.stop_endpoint(cfg)
