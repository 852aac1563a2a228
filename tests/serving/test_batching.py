"""Adaptive batching with a latency budget, over real HTTP to a real uvicorn server.

Asserted from what the variant workers record per call (the path that formed the batch and its
size, on ``/admin/status``), never from wall-clock times: a lone request takes the ``alone`` path
(scored at once, the window never opened) even with a long window, concurrent load forms
multi-request calls and some of them gathered requests while waiting in the window, and
``micro_batch: false`` scores one request per call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from pipeline_components.config import Config
from pipeline_components.serving.testing import TEST_TOKEN, ThreadServer, send_load

AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}
CHAMPION_ONLY = {"champion": 1.0}


def _batching(url: str) -> dict[str, Any]:
    r = httpx.get(f"{url}/admin/status", headers=AUTH, timeout=10.0)
    assert r.status_code == 200, r.text
    return r.json()["micro_batch"]


def _champion(mb: dict[str, Any]) -> dict[str, Any]:
    return mb["workers"].get("champion", {"calls": 0, "requests": 0, "paths": {}, "sizes": {},
                                          "joined_while_waiting": 0})


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def _sequential(url: str, rows: list[dict[str, Any]], n: int) -> None:
    with httpx.Client(base_url=url, timeout=30.0) as c:
        for i in range(n):
            r = c.post("/predict", json={"unit_id": f"lone-{i}", "features": rows[i % len(rows)]})
            assert r.status_code == 200 and r.json()["status"] == "ok", r.text


@pytest.fixture
def server(make_cfg: Callable[..., Config]) -> Iterator[Callable[[dict[str, Any]], str]]:
    started: list[ThreadServer] = []

    def _start(overrides: dict[str, Any]) -> str:
        cfg = make_cfg({"serving.weights": CHAMPION_ONLY, **overrides})
        s = ThreadServer(cfg, {"champion": "models:/abx-model/1"}).start()
        started.append(s)
        return s.url

    yield _start
    for s in started:
        s.stop()


def test_lone_requests_skip_the_window_and_load_forms_batches_inside_it(
    server: Callable[[dict[str, Any]], str], rows: list[dict[str, Any]]
) -> None:
    # A 300 ms window: a lone request that waited in it would take the "budget" path.
    url = server({"serving.batch_wait_ms": 300.0, "serving.batch_max_rows": 64})
    mb = _batching(url)
    assert mb["enabled"] and mb["wait_ms"] == 300.0 and mb["max_rows"] == 64

    _sequential(url, rows, 20)
    lone = _champion(_batching(url))
    assert lone["paths"] == {"alone": 20}, lone
    assert lone["sizes"] == {"1": 20} and lone["joined_while_waiting"] == 0

    answers = send_load(url, [{"unit_id": f"load-{i}", "features": rows[i % len(rows)]}
                              for i in range(400)], concurrency=16)
    assert all(isinstance(a, httpx.Response) and a.status_code == 200 for a in answers)
    loaded = _champion(_batching(url))
    calls = loaded["calls"] - lone["calls"]
    requests = loaded["requests"] - lone["requests"]
    sizes = _delta(loaded["sizes"], lone["sizes"])
    paths = _delta(loaded["paths"], lone["paths"])
    assert requests == 400 and calls < requests, (calls, requests)
    assert max(int(k) for k in sizes) > 1, sizes
    # The window did its job at least once: requests joined a call while it waited for them.
    assert paths.get("waited", 0) + paths.get("budget", 0) + paths.get("full", 0) > 0, paths
    assert loaded["joined_while_waiting"] > 0, loaded

    # Once the load is gone (idle for longer than the window), lone requests skip it again.
    time.sleep(0.6)
    _sequential(url, rows, 5)
    after = _champion(_batching(url))
    assert _delta(after["paths"], loaded["paths"]) == {"alone": 5}, after


def test_micro_batch_off_scores_one_request_per_call(
    server: Callable[[dict[str, Any]], str], rows: list[dict[str, Any]]
) -> None:
    url = server({"serving.micro_batch": False, "serving.batch_wait_ms": 300.0})
    answers = send_load(url, [{"unit_id": f"u{i}", "features": rows[i % len(rows)]}
                              for i in range(100)], concurrency=16)
    assert all(isinstance(a, httpx.Response) and a.status_code == 200 for a in answers)
    champ = _champion(_batching(url))
    assert champ["paths"] == {"unbatched": 100} and champ["sizes"] == {"1": 100}, champ
