"""The batched writer against real stores: drains on close, isolates rows the store refuses
(dead letters), keeps rows through an outage, spills at a shutdown deadline, and in durable mode
loses nothing to ``kill -9`` (replayed exactly once by the next writer on the spool)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from pipeline_components.serving.spool import Spool
from pipeline_components.serving.writer import BatchWriter, StoreDown
from pipeline_components.store import (
    count_rows,
    dead_letters,
    events,
    make_engine,
    predictions,
    read_frame,
)

SECRET = "sentinel-feature-value-7319"  # must never show up in a log line


def _row(i: int, exp: str = "w") -> dict:
    return {"experiment_id": exp, "ts": time.time(), "request_id": f"r{i}", "unit_id": f"u{i}",
            "variant": "champion", "model_version": "1", "prediction": 0.5, "latency_ms": 1.0,
            "status": "ok", "served": True, "features": {"x0": 1.0, "segment": SECRET}}


def _store(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'p.db'}"
    return str(request.getfixturevalue("pg_url"))


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


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_poison_row_is_dead_lettered_and_the_rest_written(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    # The case seen in the issue: 1 bad + 199 good rows used to write 0 and lose 200.
    engine = make_engine(_store(kind, tmp_path, request))
    w = BatchWriter(engine, flush_interval_s=10.0, flush_max_rows=500,
                    spool=Spool.open(tmp_path / "spool"))
    with caplog.at_level(logging.DEBUG):
        w.start()
        for i in range(200):
            w.put("predictions", _row(i) | ({"unit_id": None} if i == 57 else {}))
        assert w.flush() == 199
        w.put("predictions", _row(200))  # the writer is not stuck behind the bad row
        w.close()
    assert count_rows(engine, predictions, "w") == 200
    dead = read_frame(engine, dead_letters, "w")
    assert len(dead) == 1 and w.dead_lettered == 1
    assert dead.iloc[0]["source_table"] == "predictions"
    assert "IntegrityError" in dead.iloc[0]["reason"] or "NotNull" in dead.iloc[0]["reason"]
    assert "unit_id" in dead.iloc[0]["reason"] and '"request_id": "r57"' in dead.iloc[0]["payload"]
    assert caplog.records and not [r for r in caplog.records if SECRET in r.getMessage()]
    engine.dispose()


@pytest.mark.postgres
def test_outage_keeps_rows_in_order_then_writes_them(pg_url: str, tmp_path: Path) -> None:
    # A real outage: the database refuses connections. Nothing is dead-lettered, nothing lost.
    engine = make_engine(pg_url)
    w = BatchWriter(engine, flush_interval_s=10.0, spool=Spool.open(tmp_path / "spool"))
    w.start()
    for i in range(50):
        w.put("predictions", _row(i))
    with _refusing(pg_url):
        with pytest.raises(StoreDown):
            w.flush()
        assert w.pending() == 50 and w.dead_lettered == 0
        assert w.has_room(100) and not BatchWriter(engine, max_pending=10).has_room(11)
    assert w.flush() == 50
    w.close()
    df = read_frame(engine, predictions, "w")
    assert df["request_id"].tolist() == [f"r{i}" for i in range(50)]
    assert count_rows(engine, dead_letters, "w") == 0
    engine.dispose()


@pytest.mark.postgres
def test_shutdown_deadline_spills_and_next_writer_replays_once(pg_url: str,
                                                                tmp_path: Path) -> None:
    engine = make_engine(pg_url)
    w = BatchWriter(engine, flush_interval_s=0.05, spool=Spool.open(tmp_path / "spool")).start()
    for i in range(30):
        w.put("predictions", _row(i))
    _wait(lambda: w.pending() == 0)
    with _refusing(pg_url):
        for i in range(30, 100):
            w.put("predictions", _row(i))
        t0 = time.monotonic()
        w.close(timeout_s=1.0)
        assert time.monotonic() - t0 < 5.0 and w.spilled == 70
    w2 = BatchWriter(engine, spool=Spool.open(tmp_path / "spool")).start()
    assert w2.replayed == 70
    w2.close()
    df = read_frame(engine, predictions, "w")
    assert sorted(df["request_id"]) == sorted(f"r{i}" for i in range(100))  # once each
    engine.dispose()


_CHILD = """
import sys, time
from pathlib import Path
from pipeline_components.serving.spool import Spool
from pipeline_components.serving.writer import BatchWriter
from pipeline_components.store import make_engine
url, spool, n = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
w = BatchWriter(make_engine(url), flush_interval_s=3600, flush_max_rows=10**6,
                spool=Spool.open(spool), durable=True)
w.start()
w._prune = lambda seq: None  # crash window: committed rows still in the spool
row = lambda i: {"experiment_id": "k", "ts": 1.0, "request_id": f"r{i}", "unit_id": f"u{i}",
                 "variant": "champion", "model_version": "1", "prediction": 0.5,
                 "latency_ms": 1.0, "status": "ok", "served": True, "features": {"x": i}}
for i in range(n // 2):
    w.put("predictions", row(i))
w.flush()  # half in the store, all of it in the spool
for i in range(n // 2, n):
    w.put("predictions", row(i))
print("acknowledged", flush=True)
time.sleep(600)
"""


def test_durable_mode_loses_nothing_to_kill_9(tmp_path: Path) -> None:
    url, spool, n = f"sqlite:///{tmp_path / 'p.db'}", tmp_path / "spool", 1000
    child = subprocess.Popen([sys.executable, "-c", _CHILD, url, str(spool), str(n)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "acknowledged"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    engine = make_engine(url)
    assert count_rows(engine, predictions, "k") == n // 2
    w = BatchWriter(engine, spool=Spool.open(spool), durable=True).start()
    assert w.replayed == n // 2  # the committed half is skipped by the store's checkpoint
    w.close()
    df = read_frame(engine, predictions, "k")
    assert len(df) == n and df["request_id"].nunique() == n
    assert list((spool / "0").glob("seg-*")) == []  # all committed: segments pruned


# --------------------------------------------------------------------------- helpers
class _refusing:
    """The PostgreSQL database refuses new connections (and drops open ones) inside the block."""

    def __init__(self, url: str):
        self.name = url.rsplit("/", 1)[1]
        self.admin = create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
                                   isolation_level="AUTOCOMMIT")

    def _sql(self, sql: str) -> None:
        with self.admin.connect() as conn:
            conn.execute(text(sql))

    def __enter__(self) -> None:
        self._sql(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false')
        self._sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                  f"WHERE datname = '{self.name}' AND pid <> pg_backend_pid()")

    def __exit__(self, *exc: object) -> None:
        self._sql(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')
        self.admin.dispose()


def _wait(cond: object, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.02)
