"""A real endpoint process on SQLite: hot swaps under load with zero failed requests, a failed
load that changes nothing, the breaker, and a restart that comes back as it was."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from pipeline_components.config import Config
from pipeline_components.deploy import LocalBackend
from pipeline_components.errors import DeploymentError, RegistryError
from pipeline_components.serving import operations as ops
from pipeline_components.serving.endpoint_testing import Traffic, failed

pytestmark = pytest.mark.slow


@pytest.fixture
def endpoint(make_cfg: Callable[..., Config]) -> Iterator[tuple[Config, LocalBackend, str]]:
    cfg = make_cfg()
    backend = LocalBackend()
    ops.ensure_endpoint(cfg, "test")
    deps = backend.start_endpoint(cfg)
    yield cfg, backend, deps[0].url
    backend.stop_endpoint(cfg)
    ops._STORES.clear()


def _served(shots: list[Any], after: float, variant: str) -> list[Any]:
    return [s for s in shots if s.sent > after and s.variant == variant]


def test_load_promote_unload_under_load_with_zero_failed_requests(
        endpoint: tuple[Config, LocalBackend, str], rows: list[dict[str, Any]]) -> None:
    cfg, _, url = endpoint
    traffic = Traffic(url, rows, concurrency=8, rate_per_s=150).start()
    try:
        time.sleep(0.5)
        out = ops.load(cfg, "challenger", "models:/abx-model@challenger", "test", weight=0.5)
        assert out["pinned_uri"] == "models:/abx-model/2"  # the alias is pinned once
        time.sleep(1.0)
        ops.promote(cfg, "challenger", "test")
        t_promoted = time.time()
        ops.load(cfg, "old", "models:/abx-model/1", "test", weight=0.3)
        time.sleep(1.0)
        res = ops.unload(cfg, "old", "test")
        t_unloaded = time.time()
        time.sleep(1.0)
    finally:
        shots = traffic.stop()
    assert len(shots) > 300 and failed(shots) == []
    assert {s.model_version for s in shots if s.variant == "challenger"} == {"2"}
    assert {s.model_version for s in _served(shots, t_promoted, "champion")} == {"2"}
    assert _served(shots, t_promoted, "old") and not _served(shots, t_unloaded, "old")
    assert res["unloaded"] is True
    kinds = [e["kind"] for e in ops.open_control(cfg).events(cfg.endpoint.name)]
    for kind in ("create", "load", "loaded", "weights", "promote", "unload"):
        assert kind in kinds


def test_a_failed_load_leaves_the_endpoint_as_it_was(
        endpoint: tuple[Config, LocalBackend, str]) -> None:
    cfg, _, _ = endpoint
    before = ops.status(cfg)["variants"]
    with pytest.raises(RegistryError, match="abx-model/99"):  # refused before anything is stored
        ops.load(cfg, "challenger", "models:/abx-model/99", "test")
    with pytest.raises(DeploymentError, match="loading 'remote' .* failed.*not reachable"):
        ops.load(cfg, "remote", "http://127.0.0.1:9", "test", weight=0.5)
    assert ops.status(cfg)["variants"] == before
    assert ops.open_control(cfg).events(cfg.endpoint.name)[-1]["kind"] == "load_failed"


def test_breaker_trip_under_load_then_restart_keeps_state(
        make_cfg: Callable[..., Config], rows: list[dict[str, Any]]) -> None:
    cfg = make_cfg({"faults.challenger_failure_rate": 1.0})
    backend = LocalBackend()
    ops.ensure_endpoint(cfg, "test")
    url = backend.start_endpoint(cfg)[0].url
    try:
        traffic = Traffic(url, rows, concurrency=8, rate_per_s=150).start()
        try:
            ops.load(cfg, "challenger", "models:/abx-model/2", "test", weight=0.5)
            deadline = time.monotonic() + 30
            while not ops.status(cfg)["breaker"]["tripped"] and time.monotonic() < deadline:
                time.sleep(0.1)
            ops.wait_applied(cfg, ops.open_control(cfg).version(cfg.endpoint.name))
            t_tripped = time.time()
            time.sleep(0.5)
        finally:
            shots = traffic.stop()
        st = ops.status(cfg)
        assert st["breaker"]["tripped"] and "error rate" in st["breaker"]["reason"]
        assert failed(shots) == []  # a failing challenger falls back to the champion
        assert {s.status for s in shots if s.variant == "challenger"} == {"fallback"}
        assert not _served(shots, t_tripped + 0.2, "challenger")
        with pytest.raises(DeploymentError, match="breaker tripped"):
            ops.set_weights(cfg, {"challenger": 0.5}, "test")
        backend.stop_endpoint(cfg)
        url = backend.start_endpoint(cfg)[0].url  # a restart comes back exactly as it was
        assert ops.status(cfg)["variants"] == st["variants"]
        assert ops.status(cfg)["breaker"]["tripped"]
        live = httpx.get(f"{url}/admin/status", headers={"Authorization": "Bearer "
                         "test-token-123"}).json()
        assert live["routable"].keys() == {"champion", "challenger"}
        assert live["weights"] == {"champion": 1.0} and live["breaker"]["tripped"]
    finally:
        backend.stop_endpoint(cfg)
        ops._STORES.clear()
