"""The prediction log schema: additive migration of a store written by an older abx."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from pipeline_components.store import insert_rows, make_engine, predictions, read_frame


def test_an_older_store_gains_new_columns_and_keeps_its_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = sa.create_engine(url)
    with old.begin() as conn:  # the predictions table as the first release wrote it
        conn.execute(sa.text(
            "CREATE TABLE predictions (id INTEGER PRIMARY KEY, experiment_id VARCHAR(128) NOT NULL,"
            " ts FLOAT NOT NULL, request_id VARCHAR(64) NOT NULL, unit_id VARCHAR(128) NOT NULL,"
            " variant VARCHAR(64) NOT NULL, model_version VARCHAR(64) NOT NULL, prediction FLOAT,"
            " latency_ms FLOAT NOT NULL, status VARCHAR(16) NOT NULL, served BOOLEAN NOT NULL,"
            " features JSON)"))
        conn.execute(sa.text(
            "INSERT INTO predictions (experiment_id, ts, request_id, unit_id, variant,"
            " model_version, prediction, latency_ms, status, served)"
            " VALUES ('e', 1.0, 'r0', 'u0', 'champion', '1', 0.3, 2.0, 'ok', 1)"))
    old.dispose()

    engine = make_engine(url)  # migrates: adds the nullable `assignment` column
    insert_rows(engine, predictions, [{
        "experiment_id": "e", "ts": 2.0, "request_id": "r1", "unit_id": "u1",
        "variant": "challenger", "model_version": "2", "prediction": 0.6, "latency_ms": 2.0,
        "status": "ok", "served": True, "assignment": "forced"}])
    df = read_frame(engine, predictions, "e")
    assert list(df["request_id"]) == ["r0", "r1"]
    assert df["assignment"].isna().iloc[0] and df["assignment"].iloc[1] == "forced"
    make_engine(url)  # a second start finds nothing to add
