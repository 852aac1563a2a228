"""Production feedback: the client key, outcome validation naming the field, idempotency per
request id over HTTP, and `abx feedback import` (twice: nothing changes; a bad file: nothing
written, the row and column named)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from pipeline_components.config import Config
from pipeline_components.errors import DataError
from pipeline_components.serving.feedback_import import import_feedback
from pipeline_components.serving.testing import TEST_CLIENT_KEY, ThreadServer
from pipeline_components.store import count_rows, feedback, make_engine, read_frame

KEY = {"X-ABX-Client-Key": TEST_CLIENT_KEY}


@pytest.fixture
def server(make_cfg: Callable[..., Config]) -> Any:
    cfg = make_cfg({"serving.weights": {"champion": 1.0}})
    srv = ThreadServer(cfg, {"champion": "models:/abx-model/1"}).start()
    yield cfg, srv
    srv.stop()


def test_feedback_needs_the_client_key_and_a_valid_outcome(
        server: Any, rows: list[dict[str, Any]]) -> None:
    cfg, srv = server
    fb = f"{srv.url}/feedback"
    body = {"unit_id": "u1", "outcome": 1}
    assert httpx.post(fb, json=body).status_code == 401
    assert httpx.post(fb, json=body, headers={"X-ABX-Client-Key": "nope"}).status_code == 403
    admin = {"X-ABX-Client-Key": "test-token-123"}  # the admin token is not a client key
    assert httpx.post(fb, json=body, headers=admin).status_code == 403
    bad = httpx.post(fb, json={"unit_id": "u1", "outcome": 0.5}, headers=KEY)
    assert bad.status_code == 422 and "outcome: expected 0 or 1" in bad.json()["detail"]
    bad = httpx.post(fb, json={"unit_id": "u1", "outcome": 1, "reward": "x"}, headers=KEY)
    assert bad.status_code == 422 and "reward" in bad.json()["detail"]


def test_a_retried_outcome_is_stored_once(server: Any, rows: list[dict[str, Any]]) -> None:
    cfg, srv = server
    rid = httpx.post(f"{srv.url}/predict",
                     json={"unit_id": "u1", "features": rows[0]}).json()["request_id"]
    for _ in range(3):  # a client retrying after a timeout
        assert httpx.post(f"{srv.url}/feedback", headers=KEY,
                          json={"request_id": rid, "outcome": 1}).status_code == 200
    srv.app.state.router.writer.flush()
    stored = read_frame(make_engine(cfg.store_url), feedback, cfg.experiment.id)
    assert list(stored["request_id"]) == [rid] and list(stored["feedback_key"]) == [f"r:{rid}"]


def test_import_twice_changes_nothing(server: Any, rows: list[dict[str, Any]],
                                      tmp_path: Path) -> None:
    cfg, srv = server
    ids = [httpx.post(f"{srv.url}/predict", json={"unit_id": f"w{i}", "features": rows[i]}
                      ).json()["request_id"] for i in range(5)]
    srv.app.state.router.writer.flush()
    df = pd.DataFrame({"request_id": ids + [None, None],
                       "unit_id": [None] * 5 + ["w0", "nobody"],
                       "outcome": [1, 0, 1, 1, 0, 1, 0],
                       "timestamp": [1796000000.0] * 5 + [4102444800.0, 4102444800.0]})
    path = tmp_path / "labels.parquet"
    df.to_parquet(path)
    first = import_feedback(cfg, path)
    assert first["added"] == 7 and first["by_request"] == 5
    assert first["by_unit"] == 1 and first["unmatched"] == 1
    engine = make_engine(cfg.store_url)
    before = count_rows(engine, feedback, cfg.experiment.id)
    again = import_feedback(cfg, path)
    assert again["added"] == 0 and again["already_stored"] == 7
    assert count_rows(engine, feedback, cfg.experiment.id) == before


def test_a_bad_file_is_refused_naming_row_and_column(
        make_cfg: Callable[..., Config], tmp_path: Path) -> None:
    cfg = make_cfg()
    path = tmp_path / "labels.csv"
    path.write_text("request_id,outcome,timestamp\nr1,1,2026-12-01\nr2,maybe,2026-12-01\n"
                    "r3,1,not-a-date\n")
    with pytest.raises(DataError, match=r"row 2, column outcome: expected a finite number.*"
                                        r"row 3, column timestamp"):
        import_feedback(cfg, path)
    assert count_rows(make_engine(cfg.store_url), feedback, cfg.experiment.id) == 0
    (tmp_path / "no_outcome.csv").write_text("request_id,timestamp\nr1,2026-12-01\n")
    with pytest.raises(DataError, match=r"missing column\(s\) \['outcome'\]"):
        import_feedback(cfg, tmp_path / "no_outcome.csv")
