"""The router over real HTTP: `abx serve` as a subprocess started by the local backend.

One module-scoped router answers the contract checks (predict, bad requests, admin auth,
feedback). Row counts are read after the writer flushed (status pending_rows == 0) or after a
graceful stop.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline_components.config import Config
from pipeline_components.deploy import Deployment, LocalBackend, RouterClient
from pipeline_components.serving.testing import TEST_CLIENT_KEY, TEST_TOKEN, make_test_config
from pipeline_components.store import count_rows, feedback, make_engine, predictions, read_frame

Served = tuple[Deployment, Config, LocalBackend]
QA_TOKEN = "qa-token-456"


@pytest.fixture(scope="module")
def served(registry_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    cfg = make_test_config(registry_dir, tmp_path_factory.mktemp("router"), {
        "serving.weights": {"champion": 0.5, "challenger": 0.5},
        "serving.max_batch": 8, "serving.max_body_bytes": 4096, "serving.qa_token": QA_TOKEN})
    backend = LocalBackend()
    dep = backend.start(cfg)
    yield dep, cfg, backend
    backend.stop(dep)


def settle(client: RouterClient) -> dict[str, Any]:
    """Wait until the writer has nothing pending; returns the status."""
    for _ in range(200):
        st = client.status()
        if st["pending_rows"] == 0:
            return st
        time.sleep(0.05)
    raise AssertionError("writer never drained")


def test_predict_single_batch_and_forced(served: Served, rows: list[dict[str, Any]]) -> None:
    dep, _, _ = served
    with RouterClient(dep.url, TEST_TOKEN) as c:
        one = c.predict("user-1", rows[0])
        assert set(one) >= {"prediction", "variant", "model_version", "request_id"}
        assert 0.0 < one["prediction"] < 1.0 and one["variant"] in ("champion", "challenger")
        assert one["model_version"] == {"champion": "1", "challenger": "2"}[one["variant"]]
        assert c.predict("user-1", rows[1])["variant"] == one["variant"]  # sticky
        many = c.predict_batch([{"unit_id": f"u{i}", "features": r} for i, r in
                                enumerate(rows[:8])])
        assert len(many) == 8 and len({p["request_id"] for p in many}) == 8
        assert {p["variant"] for p in many} == {"champion", "challenger"}  # 50/50 over 8
        for v in ("champion", "challenger"):
            assert c.predict("user-1", rows[0], variant=v)["variant"] == v


def test_forced_requests_are_logged_as_qa_traffic(
    served: Served, rows: list[dict[str, Any]]
) -> None:
    # QA requests (X-ABX-Variant) are marked so the analysis can leave them out.
    dep, cfg, _ = served
    with RouterClient(dep.url, TEST_TOKEN) as c:
        qa = c.predict("qa-user", rows[0], variant="challenger")
        normal = c.predict("qa-user-2", rows[1])
        settle(c)
    preds = read_frame(make_engine(cfg.store_url), predictions, cfg.experiment.id)
    by_req = preds.set_index("request_id")["assignment"]
    assert by_req[qa["request_id"]] == "forced"
    assert by_req[normal["request_id"]] == "hash"


def test_health_ready_metrics(served: Served) -> None:
    dep, _, _ = served
    assert httpx.get(f"{dep.url}/healthz").status_code == 200
    assert httpx.get(f"{dep.url}/readyz").status_code == 200
    text = httpx.get(f"{dep.url}/metrics").text
    assert 'abx_requests_total{model_version="1",served="1",status="ok",variant="champion"}' in text
    assert "abx_latency_seconds_bucket" in text and "abx_weight" in text


def _features(rows: list[dict[str, Any]], **change: Any) -> dict[str, Any]:
    f = dict(rows[0])
    for k, v in change.items():
        if v is ...:
            f.pop(k)
        else:
            f[k] = v
    return f


BAD = [  # (name, raw body or JSON payload, expected status, a word the message must contain)
    ("malformed", b'{"unit_id": "u", "features": {', 400, "malformed JSON"),
    ("not an object", b"[1, 2]", 422, "body"),
    ("missing feature", lambda r: {"unit_id": "u", "features": _features(r, x3=...)}, 422,
     "features.x3"),
    ("extra feature", lambda r: {"unit_id": "u", "features": _features(r, zz=1.0)}, 422,
     "features.zz"),
    ("mistyped number", lambda r: {"unit_id": "u", "features": _features(r, x1="high")}, 422,
     "features.x1"),
    ("mistyped category", lambda r: {"unit_id": "u", "features": _features(r, segment=3)}, 422,
     "features.segment"),
    ("bool as number", lambda r: {"unit_id": "u", "features": _features(r, x2=True)}, 422,
     "features.x2"),
    ("NaN", lambda r: json.dumps({"unit_id": "u", "features": _features(r, x0=float("nan"))})
     .encode(), 422, "features.x0"),
    ("Infinity", lambda r: json.dumps({"unit_id": "u", "features": _features(r, x5=float("inf"))})
     .encode(), 422, "features.x5"),
    ("overflow to inf", lambda r: json.dumps({"unit_id": "u", "features": _features(r)})
     .replace('"x4": ', '"x4": 1e999, "_": ').encode(), 422, "features"),
    ("huge integer", lambda r: json.dumps({"unit_id": "u", "features": _features(r)})
     .replace('"x4": ', '"x4": 1' + '0' * 400 + ', "_": ').encode(), 422, "features"),
    ("nested value", lambda r: {"unit_id": "u", "features": _features(r, x2={"a": 1})}, 422,
     "features.x2"),
    ("not UTF-8", b'{"unit_id": "\xff\xfe"}', 400, "body"),
    ("missing unit_id", lambda r: {"features": r[0]}, 422, "unit_id"),
    ("unit_id not a string", lambda r: {"unit_id": 7, "features": r[0]}, 422, "unit_id"),
    ("unknown top-level field", lambda r: {"unit_id": "u", "features": r[0], "x": 1}, 422,
     "x: unknown field"),
    ("batch item", lambda r: {"instances": [{"unit_id": "a", "features": r[0]},
                                            {"unit_id": "b", "features": _features(r, x1=...)}]},
     422, "instances.1.features.x1"),
    ("empty batch", lambda r: {"instances": []}, 422, "instances"),
    ("too-large batch", lambda r: {"instances": [{"unit_id": str(i), "features": r[0]}
                                                 for i in range(9)]}, 413, "max_batch"),
    ("oversize body", lambda r: {"unit_id": "u" * 5000, "features": r[0]}, 413, "max_body_bytes"),
]


@pytest.mark.parametrize("name,body,status,word", BAD, ids=[b[0] for b in BAD])
def test_bad_requests_are_4xx_naming_the_field(
    served: Served, rows: list[dict[str, Any]], name: str, body: Any, status: int, word: str
) -> None:
    dep, cfg, _ = served
    with RouterClient(dep.url, TEST_TOKEN) as c:
        before = settle(c)["counts"]
        payload = body(rows) if callable(body) else body
        kw = {"content": payload} if isinstance(payload, bytes) else {"json": payload}
        r = httpx.post(f"{dep.url}/predict", headers={"content-type": "application/json"}, **kw)
        assert r.status_code == status, r.text
        assert word in r.json()["detail"]
        assert settle(c)["counts"] == before  # nothing logged as a prediction


def test_unknown_forced_variant_is_400(served: Served, rows: list[dict[str, Any]]) -> None:
    dep, _, _ = served
    r = httpx.post(f"{dep.url}/predict", json={"unit_id": "u", "features": rows[0]},
                   headers={"X-ABX-Variant": "nope", "Authorization": f"Bearer {TEST_TOKEN}"})
    assert r.status_code == 400 and "X-ABX-Variant" in r.json()["detail"]


@pytest.mark.parametrize("auth,status", [
    (None, 401), ("Bearer wrong", 403), (f"Bearer {QA_TOKEN}", 200), (f"Bearer {TEST_TOKEN}", 200),
])
def test_forcing_a_variant_needs_a_credential(
    served: Served, rows: list[dict[str, Any]], auth: str | None, status: int
) -> None:
    dep, _, _ = served
    headers = {"X-ABX-Variant": "challenger", **({"Authorization": auth} if auth else {})}
    r = httpx.post(f"{dep.url}/predict", json={"unit_id": "qa", "features": rows[0]},
                   headers=headers)
    assert r.status_code == status, r.text
    if status == 200:
        assert r.json()["variant"] == "challenger"
    # The QA token forces variants; it is not an admin credential.
    qa_admin = httpx.get(f"{dep.url}/admin/status", headers={"Authorization": f"Bearer {QA_TOKEN}"})
    assert qa_admin.status_code == 403


def test_router_params_file_holds_no_secret(served: Served) -> None:
    # The token reaches the router process by environment, never through its params file.
    dep, cfg, _ = served
    params = Path(dep.log_path).parent / "params.yaml"
    text = params.read_text()
    assert TEST_TOKEN not in text and QA_TOKEN not in text
    assert params.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("headers,status", [
    ({}, 401), ({"Authorization": "Bearer wrong"}, 403), ({"Authorization": "Basic x"}, 401),
    ({"Authorization": f"Bearer {TEST_TOKEN}"}, 200),
])
def test_admin_auth(served: Served, headers: dict[str, str], status: int) -> None:
    dep, _, _ = served
    assert httpx.get(f"{dep.url}/admin/status", headers=headers).status_code == status
    r = httpx.post(f"{dep.url}/admin/rollback", json={"reason": "x"}, headers=headers)
    assert r.status_code == (status if status != 200 else 200)
    if status == 200:  # restore the split for the other tests
        httpx.post(f"{dep.url}/admin/weights", headers=headers,
                   json={"weights": {"champion": 0.5, "challenger": 0.5}}).raise_for_status()


def test_feedback_joins_predictions(served: Served, rows: list[dict[str, Any]]) -> None:
    dep, cfg, _ = served
    with RouterClient(dep.url, TEST_TOKEN) as c:
        answers = [c.predict(f"fb-{i}", rows[i]) for i in range(20)]
        for i, a in enumerate(answers[:10]):
            c.feedback(outcome=float(i % 2), request_id=a["request_id"], reward=1.0)
        for i in range(10, 20):
            c.feedback(outcome=1.0, unit_id=f"fb-{i}")
        key = {"X-ABX-Client-Key": TEST_CLIENT_KEY}
        bad = httpx.post(f"{dep.url}/feedback", json={"outcome": 1.0}, headers=key)
        assert bad.status_code == 422 and "request_id or unit_id" in bad.json()["detail"]
        assert httpx.post(f"{dep.url}/feedback", headers=key,
                          json={"unit_id": "u", "outcome": "yes"}).status_code == 422
        settle(c)
    engine = make_engine(cfg.store_url)
    preds = read_frame(engine, predictions, cfg.experiment.id)
    fb = read_frame(engine, feedback, cfg.experiment.id)
    by_req = fb.dropna(subset=["request_id"]).merge(preds, on="request_id", suffixes=("", "_p"))
    assert len(by_req) == 10 and set(by_req["variant"]) <= {"champion", "challenger"}
    by_unit = fb.dropna(subset=["unit_id"]).merge(preds, on="unit_id", suffixes=("_f", ""))
    assert set(by_unit["unit_id"]) == {f"fb-{i}" for i in range(10, 20)}
    assert count_rows(engine, feedback, cfg.experiment.id) == 20


@pytest.mark.parametrize("body,word", [
    ({"weights": {"champion": 0.5, "nope": 0.5}}, "weights.nope"),
    ({"weights": {"champion": -1.0}}, "weights"),
    ({"weights": {"champion": 0.0, "challenger": 0.0}}, "weights"),
    ({"weight": {"champion": 1.0}}, "weight"),
])
def test_bad_weights_are_422(served: Served, body: dict[str, Any], word: str) -> None:
    dep, _, _ = served
    r = httpx.post(f"{dep.url}/admin/weights", json=body,
                   headers={"Authorization": f"Bearer {TEST_TOKEN}"})
    assert r.status_code == 422 and word in r.json()["detail"]


def test_find_reports_the_running_router(served: Served) -> None:
    dep, cfg, _ = served
    found = LocalBackend().find(cfg.experiment.id, cfg)
    assert [d.pid for d in found] == [dep.pid]
    assert LocalBackend().find("no-such-experiment", cfg) == []
