"""The prediction and feedback log: one SQLAlchemy Core schema for SQLite (WAL) and PostgreSQL.

The router writes here (batched, off the request path); the analysis stage reads here. Keeping
the schema in one module is what lets "every prediction names its variant and model version"
hold for both sides. SQLite is the embedded default; PostgreSQL is the scale-out store for several
router processes. Switching is the URL, never code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    create_engine,
    event,
    func,
    or_,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from pipeline_components.errors import AnalysisError

metadata = MetaData()

predictions = Table(
    "predictions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("experiment_id", String(128), nullable=False),
    Column("ts", Float, nullable=False),  # unix epoch seconds
    Column("request_id", String(64), nullable=False),
    Column("unit_id", String(128), nullable=False),
    Column("variant", String(64), nullable=False),
    Column("model_version", String(64), nullable=False),
    Column("prediction", Float, nullable=True),  # P(positive); NULL when status != ok
    Column("latency_ms", Float, nullable=False),
    Column("status", String(16), nullable=False),  # ok | error | fallback
    Column("served", Boolean, nullable=False, default=True),  # False: a shadow score, not shown
    Column("features", JSON, nullable=True),  # raw feature row, for drift analysis
    # How the variant was chosen: "hash" (the sticky split) or "forced" (the X-ABX-Variant QA
    # header). Forced rows are QA traffic, never experiment data. NULL (older stores) = "hash".
    Column("assignment", String(16), nullable=True),
    Index("ix_predictions_exp_req", "experiment_id", "request_id"),
    Index("ix_predictions_exp_unit", "experiment_id", "unit_id"),
)

feedback = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("experiment_id", String(128), nullable=False),
    Column("ts", Float, nullable=False),
    Column("request_id", String(64), nullable=True),
    Column("unit_id", String(128), nullable=True),
    Column("outcome", Float, nullable=False),  # the delayed label (0/1) or a numeric outcome
    Column("reward", Float, nullable=True),  # business reward of the served decision, if known
    # Idempotency key: "r:<request_id>", "f:<client feedback id>" or "u:<unit_id>@<ts>" (imports).
    # Unique (NULLs never collide): a retried or re-imported outcome is stored once.
    Column("feedback_key", String(200), nullable=True),
    Index("ix_feedback_exp_req", "experiment_id", "request_id"),
    Index("ix_feedback_exp_unit", "experiment_id", "unit_id"),
    Index("ux_feedback_key", "feedback_key", unique=True),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("experiment_id", String(128), nullable=False),
    Column("ts", Float, nullable=False),
    Column("kind", String(32), nullable=False),  # breaker | weights | promote | rollback | ...
    Column("detail", JSON, nullable=True),
)

# Rows the store refused (a NOT NULL or type violation, text the driver cannot encode): the writer
# isolates them by bisecting the failed batch and keeps them here with the database's reason, so
# one bad row never blocks the rows behind it and nothing acknowledged disappears.
dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("experiment_id", String(128), nullable=False),
    Column("ts", Float, nullable=False),
    Column("source_table", String(32), nullable=False),  # predictions | feedback | events
    Column("reason", Text, nullable=False),  # exception class + first line of the DB message
    Column("payload", Text, nullable=False),  # the row as ASCII JSON (non-JSON values as repr)
)

# How far each router's spool (serving/spool.py) is in the store: updated in the same transaction
# as the rows, so replaying a spool after a crash writes every row exactly once.
writer_checkpoints = Table(
    "writer_checkpoints",
    metadata,
    Column("wal_id", String(64), primary_key=True),
    Column("seq", BigInteger, nullable=False),  # highest spool sequence number committed
    Column("ts", Float, nullable=False),
)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def make_engine(url: str) -> Engine:
    """An engine on the prediction store at ``url``, its schema checked (or created when empty).

    A store an older abx made is refused with ``StoreSchemaError`` until ``abx db upgrade``
    migrates it (Alembic, ``pipeline_components/migrations``).
    """
    from pipeline_components.migrations import STORE, open_engine

    return open_engine(url, STORE)


def connect(url: str) -> Engine:
    """An engine on ``url`` without touching its schema (migrations and both stores use it).

    SQLite gets WAL (readers never block the router's writer) and a busy timeout; the parent
    folder is created. PostgreSQL URLs without a driver use psycopg 3. Errors never quote the
    bound parameters (``hide_parameters``): they hold users' feature rows, which stay out of logs.
    """
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    try:
        if url.startswith("sqlite:///"):
            from pathlib import Path

            db_path = url[len("sqlite:///") :]
            if db_path and db_path != ":memory:":
                Path(db_path).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"check_same_thread": False},
                                   hide_parameters=True)
            event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        return create_engine(url, pool_pre_ping=True, hide_parameters=True)
    except SQLAlchemyError as exc:
        raise AnalysisError(f"prediction store {url!r} is not reachable: {exc}") from exc


def insert_rows(engine: Engine, table: Table, rows: Iterable[Mapping[str, Any]]) -> int:
    """Insert rows in one transaction (executemany); returns the count written."""
    batch = list(rows)
    if not batch:
        return 0
    with engine.begin() as conn:
        conn.execute(insert_statement(engine, table), batch)
    return len(batch)


def insert_statement(engine: Engine, table: Table) -> Any:
    """A plain insert; for feedback one that skips a row whose ``feedback_key`` is stored
    (a retried or re-imported outcome is not an error, it is already there)."""
    if table is not feedback:
        return table.insert()
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing()
    if engine.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table).on_conflict_do_nothing()
    return table.insert()


def read_feedback(engine: Engine, experiment_id: str) -> pd.DataFrame:
    """Feedback of one experiment: rows tagged with it, plus outcomes for its requests that
    arrived after the endpoint stopped collecting for it (tagged ``endpoint:<name>``) or that
    an import could not place (``unmatched``). Another experiment's rows never leak in."""
    ids = select(predictions.c.request_id).where(predictions.c.experiment_id == experiment_id)
    late = or_(feedback.c.experiment_id.like("endpoint:%"),
               feedback.c.experiment_id == "unmatched")
    q = (select(feedback).where(or_(feedback.c.experiment_id == experiment_id,
                                    and_(late, feedback.c.request_id.in_(ids))))
         .order_by(feedback.c.id))
    with engine.connect() as conn:
        return pd.DataFrame(conn.execute(q).mappings().all(), columns=[c.name for c in feedback.c])


def count_rows(engine: Engine, table: Table, experiment_id: str) -> int:
    with engine.connect() as conn:
        q = select(func.count()).select_from(table).where(table.c.experiment_id == experiment_id)
        return int(conn.execute(q).scalar_one())


def read_frame(engine: Engine, table: Table, experiment_id: str) -> pd.DataFrame:
    """All rows of one experiment as a DataFrame (analysis side; never on the request path)."""
    with engine.connect() as conn:
        q = select(table).where(table.c.experiment_id == experiment_id).order_by(table.c.id)
        return pd.DataFrame(conn.execute(q).mappings().all(), columns=[c.name for c in table.c])
