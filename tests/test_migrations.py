"""Schema migrations (Alembic) of the prediction and control stores, on real SQLite and real
PostgreSQL: stores made by older abx releases upgrade by `abx db upgrade` with every row kept,
the app refuses them until then, an empty store is created at head, and the newest revision
matches the tables the code writes."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from pipeline_components.cli import app
from pipeline_components.errors import StoreSchemaError
from pipeline_components.migrations import CONTROL, STORE, head, state, target_metadata
from pipeline_components.serving.control import control_metadata, make_control_engine
from pipeline_components.store import (
    connect,
    feedback,
    insert_rows,
    make_engine,
    metadata,
    predictions,
    read_frame,
)

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file, or a PostgreSQL database of this test's own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    name = f"abx_t_{uuid.uuid4().hex}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _first_release(engine: sa.Engine) -> None:
    """The prediction store exactly as the first release (45507a8) created it, with rows."""
    md = sa.MetaData()
    sa.Table("predictions", md,
             sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
             sa.Column("experiment_id", sa.String(128), nullable=False),
             sa.Column("ts", sa.Float, nullable=False),
             sa.Column("request_id", sa.String(64), nullable=False),
             sa.Column("unit_id", sa.String(128), nullable=False),
             sa.Column("variant", sa.String(64), nullable=False),
             sa.Column("model_version", sa.String(64), nullable=False),
             sa.Column("prediction", sa.Float, nullable=True),
             sa.Column("latency_ms", sa.Float, nullable=False),
             sa.Column("status", sa.String(16), nullable=False),
             sa.Column("served", sa.Boolean, nullable=False, default=True),
             sa.Column("features", sa.JSON, nullable=True),
             sa.Index("ix_predictions_exp_req", "experiment_id", "request_id"),
             sa.Index("ix_predictions_exp_unit", "experiment_id", "unit_id"))
    sa.Table("feedback", md,
             sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
             sa.Column("experiment_id", sa.String(128), nullable=False),
             sa.Column("ts", sa.Float, nullable=False),
             sa.Column("request_id", sa.String(64), nullable=True),
             sa.Column("unit_id", sa.String(128), nullable=True),
             sa.Column("outcome", sa.Float, nullable=False),
             sa.Column("reward", sa.Float, nullable=True),
             sa.Index("ix_feedback_exp_req", "experiment_id", "request_id"),
             sa.Index("ix_feedback_exp_unit", "experiment_id", "unit_id"))
    sa.Table("events", md,
             sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
             sa.Column("experiment_id", sa.String(128), nullable=False),
             sa.Column("ts", sa.Float, nullable=False),
             sa.Column("kind", sa.String(32), nullable=False),
             sa.Column("detail", sa.JSON, nullable=True))
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(md.tables["predictions"].insert(), [
            {"experiment_id": "e", "ts": 1.0 + i, "request_id": f"r{i}", "unit_id": f"u{i}",
             "variant": "champion", "model_version": "1", "prediction": 0.25, "latency_ms": 2.0,
             "status": "ok", "served": True, "features": {"x0": i}} for i in range(3)])
        conn.execute(md.tables["feedback"].insert(), [
            {"experiment_id": "e", "ts": 9.0, "request_id": "r1", "unit_id": "u1",
             "outcome": 1.0}])


def _previous_release(engine: sa.Engine) -> None:
    """Both stores as the last abx before Alembic made them (create_all, the unique index)."""
    metadata.create_all(engine)
    control_metadata.create_all(engine)
    insert_rows(engine, predictions, [{
        "experiment_id": "e", "ts": 1.0, "request_id": "r0", "unit_id": "u0",
        "variant": "champion", "model_version": "1", "prediction": 0.3, "latency_ms": 2.0,
        "status": "ok", "served": True, "assignment": "hash"}])
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO abx_endpoints (name, version, salt, base_salt, shadow, collecting, "
            "breaker_tripped, created_at, updated_at) "
            "VALUES ('abx', 7, 's', 's', false, false, false, 1.0, 1.0)"))


def _cli(url: str, *args: str) -> list[dict[str, str | None]]:
    res = CliRunner().invoke(app, ["db", *args, "--set", f"serving.store_url={url}"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_a_store_of_the_first_release_is_refused_then_upgraded_with_its_rows(url: str) -> None:
    engine = connect(url)
    _first_release(engine)
    with pytest.raises(StoreSchemaError, match="abx db upgrade"):
        make_engine(url)  # the app refuses; nothing changed
    assert state(engine, STORE)["revision"] is None

    assert _cli(url, "current")[0]["status"].startswith("made before Alembic (looks like s0001)")
    out = _cli(url, "upgrade")
    assert out[0] == {"url": out[0]["url"], "schema": "store", "from": "s0001", "to": "s0004"}
    assert out[1]["schema"] == "control" and out[1]["to"] == head(CONTROL)

    engine = make_engine(url)
    old = read_frame(engine, predictions, "e")
    assert list(old["request_id"]) == ["r0", "r1", "r2"]
    assert old["assignment"].isna().all() and old["features"].iloc[2] == {"x0": 2}
    row = {"experiment_id": "e", "ts": 10.0, "request_id": "r2", "unit_id": "u2",
           "outcome": 0.0, "feedback_key": "r:r2"}
    insert_rows(engine, feedback, [row, row])  # the new unique key: stored once
    fb = read_frame(engine, feedback, "e")
    assert list(fb["request_id"]) == ["r1", "r2"] and fb["feedback_key"].isna().iloc[0]
    assert _cli(url, "upgrade")[0]["from"] == "s0004"  # a second upgrade is a no-op


def test_stores_of_the_last_release_before_alembic_are_recognised_and_kept(url: str) -> None:
    engine = connect(url)
    _previous_release(engine)
    with pytest.raises(StoreSchemaError, match="made by an abx before schema migrations"):
        make_control_engine(url)
    out = _cli(url, "upgrade")
    assert [(o["from"], o["to"]) for o in out] == [("s0004", "s0004"), ("c0001", "c0001")]
    assert read_frame(make_engine(url), predictions, "e")["assignment"].tolist() == ["hash"]
    with make_control_engine(url).connect() as conn:
        assert conn.execute(sa.text("SELECT version FROM abx_endpoints")).scalar_one() == 7


def test_a_store_of_a_newer_abx_is_refused_and_not_touched(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE abx_store_version SET version_num = 's9999'"))
    with pytest.raises(StoreSchemaError, match="'s9999', which this abx does not know"):
        make_engine(url)
    res = CliRunner().invoke(app, ["db", "upgrade", "--set", f"serving.store_url={url}"])
    assert isinstance(res.exception, StoreSchemaError) and res.exception.exit_code == 13
    assert state(engine, STORE)["revision"] == "s9999"


@pytest.mark.parametrize("schema", [STORE, CONTROL], ids=["store", "control"])
def test_head_matches_the_tables_the_code_writes(url: str, schema: object) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(url) if schema is STORE else make_control_engine(url)
    own = set(schema.tables)  # type: ignore[attr-defined]
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={
            "include_name": lambda name, type_, _p: type_ != "table" or name in own})
        diff = compare_metadata(ctx, target_metadata(schema))  # type: ignore[arg-type]
    assert diff == []


def test_replicas_starting_together_on_an_empty_store_create_it_once(url: str) -> None:
    errors: list[BaseException] = []

    def start() -> None:
        try:
            make_engine(url).dispose()
            make_control_engine(url).dispose()
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    engine = connect(url)
    assert state(engine, STORE)["revision"] == head(STORE)
    assert state(engine, CONTROL)["revision"] == head(CONTROL)


def test_an_unreachable_store_is_named_without_its_password() -> None:
    from pipeline_components.errors import AnalysisError

    url = "postgresql://postgres:secret@127.0.0.1:9/abx"  # nothing listens on port 9
    with pytest.raises(AnalysisError, match=r"control database postgresql://postgres:\*\*\*@127"):
        make_control_engine(url)
    res = CliRunner().invoke(app, ["db", "current", "--set", f"serving.store_url={url}"])
    assert isinstance(res.exception, AnalysisError) and "secret" not in str(res.exception)
