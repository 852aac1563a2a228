"""Schema migrations of abx's two stores, with Alembic; the scripts ship inside the package.

Two schemas, each with its own revision history and version table, because they can live in
different databases (``endpoint.control_url``) or share one (the default):

- ``store``: the prediction log (``pipeline_components/store.py``), table ``abx_store_version``;
- ``control``: the endpoint control state (``serving/control.py``), table ``abx_control_version``.

Policy, the same for the app and every command that opens a store (``ensure``):

- an empty database is created at the newest revision (a fresh state dir, a test database);
- a database at the newest revision is used as is (one ``SELECT`` of the version table);
- anything else is refused with ``StoreSchemaError`` naming the store, its revision and the
  command that fixes it, ``abx db upgrade``: an upgrade of a store that holds months of
  predictions is an operator's decision, taken once, not a side effect of whichever replica starts
  first. A store written by a newer abx is refused too (its schema is unknown here).

``upgrade`` also takes stores made before abx used Alembic (tables, no version table): it
recognises which release made them from their columns, records that revision, then upgrades.
Creating and upgrading hold a lock (a PostgreSQL advisory lock, a file lock next to a SQLite
file) so replicas that start together on an empty database create it once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, MetaData, inspect, text

from pipeline_components.errors import StoreSchemaError

if TYPE_CHECKING:
    from alembic.config import Config

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Schema:
    """One migrated schema: where its scripts are and which tables it owns."""

    name: str  # "store" | "control"
    version_table: str
    tables: tuple[str, ...]
    legacy_revision: Callable[[Connection], str]  # revision of a pre-Alembic store

    @property
    def script_location(self) -> Path:
        return HERE / self.name


def _store_legacy(conn: Connection) -> str:
    """The revision of a prediction store that an abx before Alembic made (its columns tell)."""
    insp = inspect(conn)
    if "feedback_key" in {c["name"] for c in insp.get_columns("feedback")}:
        return "s0004"
    if insp.has_table("dead_letters"):
        return "s0003"
    if "assignment" in {c["name"] for c in insp.get_columns("predictions")}:
        return "s0002"
    return "s0001"


STORE = Schema("store", "abx_store_version",
               ("predictions", "feedback", "events", "dead_letters", "writer_checkpoints"),
               _store_legacy)
CONTROL = Schema("control", "abx_control_version",
                 ("abx_endpoints", "abx_endpoint_variants", "abx_endpoint_events",
                  "abx_endpoint_replicas"),
                 lambda _conn: "c0001")
SCHEMAS = {s.name: s for s in (STORE, CONTROL)}


def target_metadata(schema: Schema) -> MetaData:
    """The live SQLAlchemy tables the newest revision must match (tests compare them)."""
    if schema is STORE:
        from pipeline_components.store import metadata

        return metadata
    from pipeline_components.serving.control import control_metadata

    return control_metadata


def _alembic_config(schema: Schema, conn: Connection | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(schema.script_location))
    cfg.attributes["connection"] = conn
    cfg.attributes["schema"] = schema
    return cfg


@cache
def head(schema: Schema) -> str:
    """The newest revision of ``schema`` shipped with this abx."""
    from alembic.script import ScriptDirectory

    got = ScriptDirectory.from_config(_alembic_config(schema)).get_current_head()
    assert got is not None, f"no migrations under {schema.script_location}"
    return got


def current(conn: Connection, schema: Schema) -> str | None:
    """The revision recorded in the database, or None when it has no version table."""
    from alembic.runtime.migration import MigrationContext

    ctx = MigrationContext.configure(conn, opts={"version_table": schema.version_table})
    return ctx.get_current_revision()


def state(engine: Engine, schema: Schema) -> dict[str, str | None]:
    """What ``abx db current`` prints: revision, head, and a word on what to do."""
    with engine.connect() as conn:
        rev = current(conn, schema)
        present = _present(conn, schema)
        legacy = schema.legacy_revision(conn) if rev is None and present else None
    status = ("empty (created on first use)" if rev is None and not present
              else f"made before Alembic (looks like {legacy}): run `abx db upgrade`"
              if rev is None else "up to date" if rev == head(schema)
              else "behind: run `abx db upgrade`" if _known(schema, rev)
              else "written by a newer abx")
    return {"schema": schema.name, "revision": rev, "head": head(schema), "status": status}


def _present(conn: Connection, schema: Schema) -> bool:
    return any(inspect(conn).has_table(t) for t in schema.tables)


def _known(schema: Schema, rev: str) -> bool:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_alembic_config(schema))
    return rev in {s.revision for s in script.walk_revisions()}


def open_engine(url: str, schema: Schema) -> Engine:
    """An engine on ``url`` with ``schema`` checked, or created when the database is empty.

    Raises:
        AnalysisError: the database cannot be reached.
        StoreSchemaError: it holds an older (or newer) schema; nothing was changed.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from pipeline_components.errors import AnalysisError
    from pipeline_components.store import connect

    engine = connect(url)
    try:
        ensure(engine, schema, url)
    except SQLAlchemyError as exc:
        engine.dispose()
        raise AnalysisError(f"{schema.name} database {safe_url(url)} is not reachable: "
                            f"{exc.__class__.__name__}: {exc}") from exc
    return engine


def ensure(engine: Engine, schema: Schema, url: str) -> None:
    """Create an empty store at head, use one at head, refuse anything else (see module doc)."""
    with engine.connect() as conn:
        if current(conn, schema) == head(schema):
            return
    with _locked(engine, schema) as conn:  # re-read: another process may be creating it
        rev = current(conn, schema)
        if rev == head(schema):
            return
        if rev is None and not _present(conn, schema):
            from alembic import command

            command.upgrade(_alembic_config(schema, conn), "head")
            return
    raise StoreSchemaError(_refusal(schema, url, rev))


def _refusal(schema: Schema, url: str, rev: str | None) -> str:
    where = f"{schema.name} database {safe_url(url)}"
    if rev is None:
        return (f"{where}: made by an abx before schema migrations (no {schema.version_table} "
                f"table); run `abx db upgrade` once to bring it to revision {head(schema)}")
    if not _known(schema, rev):
        return (f"{where}: at revision {rev!r}, which this abx does not know (written by a "
                f"newer abx?); upgrade abx, or point the config at another store")
    return (f"{where}: at revision {rev}, this abx needs {head(schema)}; "
            "run `abx db upgrade` (stored rows are kept)")


def safe_url(url: str) -> str:
    """``url`` with its password hidden (for messages and `abx db current`)."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def upgrade(engine: Engine, schema: Schema) -> tuple[str | None, str]:
    """Bring the database to head (``abx db upgrade``); returns (revision before, after).

    A store made before Alembic is first stamped with the revision its columns match.
    """
    from alembic import command

    with _locked(engine, schema) as conn:
        before = current(conn, schema)
        if before is None and _present(conn, schema):
            command.stamp(_alembic_config(schema, conn), schema.legacy_revision(conn))
            before = current(conn, schema)
        if before is not None and not _known(schema, before):
            raise StoreSchemaError(_refusal(schema, str(engine.url), before))
        command.upgrade(_alembic_config(schema, conn), "head")
        return before, current(conn, schema) or head(schema)


@contextlib.contextmanager
def _locked(engine: Engine, schema: Schema) -> Iterator[Connection]:
    """One transaction holding the migration lock of ``schema`` on this database."""
    with _file_lock(engine), engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_key(schema)})
        yield conn


def _lock_key(schema: Schema) -> int:
    """A stable advisory-lock key per schema (the same in every process)."""
    return 0x0AB0_0000 + (1 if schema is STORE else 2)


def _file_lock(engine: Engine) -> contextlib.AbstractContextManager[object]:
    """A file lock beside a SQLite database (one machine by construction); a no-op otherwise,
    where the advisory lock taken inside the transaction serialises."""
    from filelock import FileLock

    db = engine.url.database if engine.dialect.name == "sqlite" else None
    if not db or db == ":memory:":
        return contextlib.nullcontext()
    return FileLock(f"{db}.migrate.lock", timeout=120)


def run_env() -> None:
    """The body of each schema's ``env.py``: migrate on the connection ``upgrade``/``ensure``
    handed over, touching only this schema's tables and version table."""
    from alembic import context

    schema: Schema = context.config.attributes["schema"]
    conn: Connection | None = context.config.attributes.get("connection")
    if conn is None:
        raise StoreSchemaError("abx migrations run through `abx db upgrade`, not the alembic CLI")

    def own(name: str | None, type_: str, _parent: object) -> bool:
        return type_ != "table" or name in schema.tables

    context.configure(connection=conn, target_metadata=target_metadata(schema),
                      version_table=schema.version_table, include_name=own)
    with context.begin_transaction():
        context.run_migrations()
