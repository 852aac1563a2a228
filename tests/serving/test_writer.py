"""The batched writer: flushes on size/interval, drains on close, keeps rows when a write fails."""

from __future__ import annotations

import time
from pathlib import Path

from pipeline_components.serving.writer import BatchWriter
from pipeline_components.store import count_rows, events, make_engine, predictions


def _row(i: int) -> dict:
    return {"experiment_id": "w", "ts": time.time(), "request_id": f"r{i}", "unit_id": f"u{i}",
            "variant": "champion", "model_version": "1", "prediction": 0.5, "latency_ms": 1.0,
            "status": "ok", "served": True, "features": {"x0": 1.0}}


def test_close_drains_every_row(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    w = BatchWriter(engine, flush_interval_s=10.0, flush_max_rows=100).start()
    for i in range(1234):
        w.put("predictions", _row(i))
    w.put("events", {"experiment_id": "w", "ts": 1.0, "kind": "weights", "detail": {}})
    w.close()
    assert count_rows(engine, predictions, "w") == 1234
    assert count_rows(engine, events, "w") == 1
    assert w.pending() == 0


def test_failed_write_keeps_rows_for_retry(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    engine = make_engine(f"sqlite:///{db}")
    w = BatchWriter(engine, flush_interval_s=10.0)
    bad = _row(0) | {"unit_id": None}  # NOT NULL violation: the batch fails as a whole
    w.put("predictions", bad)
    try:
        w.flush()
    except Exception:
        pass
    assert w.pending() == 1 and w.failures == 1
    w._queues["predictions"].clear()
    w.put("predictions", _row(1))
    w.close(timeout_s=1.0)
    assert count_rows(engine, predictions, "w") == 1
