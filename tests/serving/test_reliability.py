"""Reliability under load: no lost rows, weight changes without failures, stickiness across a
restart, shadow mode, the guardrail breaker on an injected failing challenger, PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline_components.config import Config
from pipeline_components.deploy import LocalBackend, RouterClient
from pipeline_components.serving.testing import TEST_TOKEN, send_load
from pipeline_components.store import (
    count_rows,
    dead_letters,
    events,
    make_engine,
    predictions,
    read_frame,
)

AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}
RAMP = {300: 0.25, 800: 0.5, 1300: 0.1, 1800: 0.5}  # request index -> challenger share


def _bodies(rows: list[dict[str, Any]], n: int, prefix: str = "u") -> list[dict[str, Any]]:
    return [{"unit_id": f"{prefix}{i % 500}", "features": rows[i % len(rows)]} for i in range(n)]


def _assignments(client: RouterClient, rows: list[dict[str, Any]]) -> dict[str, str]:
    got: dict[str, str] = {}
    for start in range(0, 300, 100):
        batch = [{"unit_id": f"s{i}", "features": rows[i % len(rows)]}
                 for i in range(start, start + 100)]
        for inst, ans in zip(batch, client.predict_batch(batch), strict=True):
            got[inst["unit_id"]] = ans["variant"]
    return got


def _expected(cfg: Config, rows: list[dict[str, Any]]) -> dict[str, list[float]]:
    import mlflow
    import pandas as pd

    mlflow.set_tracking_uri(cfg.tracking_uri)
    frame = pd.DataFrame(rows)
    return {v: mlflow.sklearn.load_model(f"models:/abx-model/{v}").predict_proba(frame)[:, 1]
            .tolist() for v in ("1", "2")}


def test_load_with_weight_changes_loses_nothing_and_restart_is_sticky(
    make_cfg: Callable[..., Config], rows: list[dict[str, Any]]
) -> None:
    cfg = make_cfg({"serving.weights": {"champion": 0.9, "challenger": 0.1}})
    backend = LocalBackend()
    dep = backend.start(cfg)
    try:
        with RouterClient(dep.url, TEST_TOKEN) as c:
            before = _assignments(c, rows)

        async def ramp(i: int, client: httpx.AsyncClient) -> None:
            if i in RAMP:
                w = {"champion": 1 - RAMP[i], "challenger": RAMP[i]}
                r = await client.post("/admin/weights", json={"weights": w}, headers=AUTH)
                r.raise_for_status()

        answers = send_load(dep.url, _bodies(rows, 2000), concurrency=16, before=ramp)
        with RouterClient(dep.url, TEST_TOKEN) as c:
            mb = c.status()["micro_batch"]
        # Concurrent requests were coalesced: fewer model calls than requests.
        assert mb["requests"] >= 2000 and mb["calls"] < mb["requests"]
    finally:
        backend.stop(dep)  # graceful: in-flight requests finish, then the writer drains
    failed = [a for a in answers if not isinstance(a, httpx.Response) or a.status_code != 200]
    assert failed == []
    engine = make_engine(cfg.store_url)
    assert count_rows(engine, predictions, cfg.experiment.id) == 2000 + 300
    kinds = read_frame(engine, events, cfg.experiment.id)["kind"].tolist()
    assert kinds.count("weights") == len(RAMP)
    assert {a.json()["variant"] for a in answers} == {"champion", "challenger"}
    # Coalesced calls must hand every request its own row's answer.
    want = _expected(cfg, rows)
    for i, a in enumerate(answers):
        got = a.json()
        assert got["prediction"] == pytest.approx(want[got["model_version"]][i % len(rows)],
                                                  rel=1e-9)

    dep2 = backend.start(cfg)  # same salt, same configured weights: same assignments
    try:
        with RouterClient(dep2.url, TEST_TOKEN) as c:
            assert _assignments(c, rows) == before
    finally:
        backend.stop(dep2)
    assert sum(v == "challenger" for v in before.values()) > 0


def test_shadow_mode_serves_champion_and_logs_both(
    make_cfg: Callable[..., Config], rows: list[dict[str, Any]]
) -> None:
    cfg = make_cfg({"serving.shadow": True,
                    "serving.weights": {"champion": 0.5, "challenger": 0.5}})
    backend = LocalBackend()
    dep = backend.start(cfg)
    try:
        answers = send_load(dep.url, _bodies(rows, 300, "sh"), concurrency=8)
    finally:
        backend.stop(dep)
    assert {a.json()["variant"] for a in answers} == {"champion"}
    df = read_frame(make_engine(cfg.store_url), predictions, cfg.experiment.id)
    served, shadow = df[df["served"]], df[~df["served"]]
    assert len(served) == 300 and set(served["variant"]) == {"champion"}
    assert len(shadow) == 300 and set(shadow["variant"]) == {"challenger"}
    assert set(shadow["model_version"]) == {"2"} and (shadow["status"] == "ok").all()
    assert set(shadow["request_id"]) == {a.json()["request_id"] for a in answers}


def test_breaker_trips_on_failing_challenger_and_falls_back(
    make_cfg: Callable[..., Config], rows: list[dict[str, Any]]
) -> None:
    cfg = make_cfg({"faults.challenger_failure_rate": 1.0,
                    "serving.weights": {"champion": 0.5, "challenger": 0.5},
                    "serving.guardrails.min_requests": 20})
    backend = LocalBackend()
    dep = backend.start(cfg)
    try:
        answers = [a.json() for a in send_load(dep.url, _bodies(rows, 200, "br"), 4)]
        with RouterClient(dep.url, TEST_TOKEN) as c:
            st = c.status()
            assert st["breaker"]["tripped"] and "error rate" in st["breaker"]["reason"]
            assert st["weights"]["challenger"] == 0.0
            after = [c.predict(f"late-{i}", rows[0]) for i in range(40)]
            assert {a["variant"] for a in after} == {"champion"}
            r = httpx.post(f"{dep.url}/admin/promote", headers=AUTH)
            assert r.status_code == 409 and "breaker" in r.json()["detail"]
            # A QA override does not reach a challenger the breaker took out of service.
            r = httpx.post(f"{dep.url}/predict", json={"unit_id": "qa", "features": rows[0]},
                           headers={"X-ABX-Variant": "challenger", **AUTH})
            assert r.status_code == 409 and "breaker" in r.json()["detail"]
            st = c.set_weights({"champion": 0.5, "challenger": 0.5}, reset_breaker=True)
            assert not st["breaker"]["tripped"]
    finally:
        backend.stop(dep)
    fallback = [a for a in answers if a["status"] == "fallback"]
    assert fallback and all(a["model_version"] == "1" and a["prediction"] is not None
                            for a in fallback)
    assert all(a["status"] in ("ok", "fallback") for a in answers)  # no request failed
    engine = make_engine(cfg.store_url)
    ev = read_frame(engine, events, cfg.experiment.id)
    trip = ev[ev["kind"] == "breaker"]
    assert len(trip) == 1 and "error rate" in trip.iloc[0]["detail"]["reason"]
    assert count_rows(engine, predictions, cfg.experiment.id) == 200 + 40


@pytest.mark.postgres
def test_postgres_store_with_a_poison_row(
    make_cfg: Callable[..., Config], rows: list[dict[str, Any]], pg_url: str
) -> None:
    # A unit id with a NUL byte is valid JSON but PostgreSQL text refuses it: the row goes to
    # dead_letters with the reason, every other answered request is stored.
    cfg = make_cfg({"serving.store_url": pg_url, "experiment.id": "pg-exp"})
    backend = LocalBackend()
    dep = backend.start(cfg)
    try:
        answers = send_load(dep.url, _bodies(rows, 150, "pg"), concurrency=8)
        poison = httpx.post(f"{dep.url}/predict",
                            json={"unit_id": "bad\u0000id", "features": rows[0]})
        answers += send_load(dep.url, _bodies(rows, 150, "pg2"), concurrency=8)
        with RouterClient(dep.url, TEST_TOKEN) as c:
            c.feedback(1.0, request_id=answers[0].json()["request_id"])
    finally:
        backend.stop(dep)
    assert poison.status_code == 200 and all(a.status_code == 200 for a in answers)
    engine = make_engine(pg_url)
    assert count_rows(engine, predictions, "pg-exp") == 300
    dead = read_frame(engine, dead_letters, "pg-exp")
    assert len(dead) == 1 and "NUL" in dead.iloc[0]["reason"]
    assert poison.json()["request_id"] in dead.iloc[0]["payload"]
    log = Path(dep.log_path).read_text()
    assert "dead_letters" in log and str(rows[0]["x0"]) not in log  # no features in the log
    engine.dispose()
