"""Named locks held in a database, so they work wherever the database is reachable.

Every registry alias move runs under ``db_lock(cfg.lock_url, "alias:<model>")``. A file lock
(``filelock``, which abx uses where a lock is local by nature: the router's spool slots, the
migration of a SQLite file) would only serialise processes on one machine; Airflow workers on
several machines share a database instead:

* **PostgreSQL**: a session-level advisory lock (``pg_try_advisory_lock``) on a 64-bit key
  derived from the name. The server releases it when the holder's connection ends, so a process
  killed while holding it never blocks the next one.
* **SQLite** (one machine): a ``BEGIN IMMEDIATE`` transaction held open on the lock database;
  SQLite's file lock is released by the operating system when the holder dies. It locks the whole
  database, so all names share one lock (alias moves take milliseconds; that is fine).

The holder's identity (experiment id, host, pid) is recorded where the backend allows it
(PostgreSQL ``application_name``) so a waiter that gives up can say who holds the lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline_components.errors import ConfigError, ExperimentLockedError

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

POLL_S = 0.1


@dataclass(frozen=True)
class HeldLock:
    """Proof that a lock is held: alias moves take one, so they cannot run unlocked."""

    url: str
    name: str


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for ``name`` (PostgreSQL advisory locks take a bigint)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big",
                          signed=True)


def holder_label(owner: str) -> str:
    return f"abx {owner} {socket.gethostname()} pid {os.getpid()}"[:63]


@contextlib.contextmanager
def db_lock(url: str, name: str, timeout_s: float, owner: str = "") -> Iterator[HeldLock]:
    """Hold the lock ``name`` in the database at ``url`` for the ``with`` block.

    Args:
        url: ``postgresql[+driver]://...`` or ``sqlite:///path``.
        name: what is locked, e.g. ``alias:abx-model``.
        timeout_s: how long to wait for another holder before giving up.
        owner: who is asking (an experiment id), shown to waiters that give up.

    Raises:
        ExperimentLockedError: still held by someone else after ``timeout_s``.
        ConfigError: ``url`` is neither PostgreSQL nor SQLite.
    """
    if url.startswith("postgresql"):
        with _pg_lock(url, name, timeout_s, owner) as held:
            yield held
    elif url.startswith("sqlite:///"):
        with _sqlite_lock(url, name, timeout_s) as held:
            yield held
    else:
        raise ConfigError(f"registry.lock_url {url!r}: a lock needs PostgreSQL or SQLite")


def _locked(url: str, name: str, timeout_s: float, holder: str) -> ExperimentLockedError:
    return ExperimentLockedError(
        f"lock {name!r} in {_safe(url)} is held by {holder} (waited {timeout_s:.1f} s; "
        "canary.lock_timeout_s); another promotion or rollback of this model is running")


def _safe(url: str) -> str:
    """The URL without a password, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can parse: say nothing more than the scheme
        return url.split(":", 1)[0] + "://..."


@contextlib.contextmanager
def _sqlite_lock(url: str, name: str, timeout_s: float) -> Iterator[HeldLock]:
    path = Path(url.removeprefix("sqlite:///"))
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: we issue BEGIN ourselves; timeout is SQLite's busy wait.
    conn = sqlite3.connect(path, timeout=timeout_s, isolation_level=None)
    try:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc).lower():
                raise ConfigError(f"registry.lock_url {url}: {exc}") from exc
            raise _locked(url, name, timeout_s, "another process") from None
        yield HeldLock(url, name)
    finally:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        conn.close()


@contextlib.contextmanager
def _pg_lock(url: str, name: str, timeout_s: float, owner: str) -> Iterator[HeldLock]:
    import sqlalchemy as sa

    driver_url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = sa.create_engine(driver_url, poolclass=sa.pool.NullPool, connect_args={
        "application_name": holder_label(owner), "connect_timeout": 10})
    key = lock_key(name)
    try:
        conn = engine.connect()
    except sa.exc.SQLAlchemyError as exc:
        raise ExperimentLockedError(f"lock {name!r}: database {_safe(url)} is unreachable: "
                                    f"{exc.__class__.__name__}") from exc
    try:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        deadline = time.monotonic() + timeout_s
        try_lock = sa.text("SELECT pg_try_advisory_lock(:k)")
        while not conn.execute(try_lock, {"k": key}).scalar_one():
            if time.monotonic() >= deadline:
                raise _locked(url, name, timeout_s, _pg_holder(conn, key))
            time.sleep(POLL_S)
        try:
            yield HeldLock(url, name)
        finally:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
    finally:
        conn.close()
        engine.dispose()


def _pg_holder(conn: Connection, key: int) -> str:
    """The ``application_name`` of the session holding advisory lock ``key``, if visible."""
    import sqlalchemy as sa

    unsigned = key & 0xFFFFFFFFFFFFFFFF
    q = sa.text("SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a "
                "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
                "AND l.classid::bigint = :hi AND l.objid::bigint = :lo AND l.objsubid = 1")
    try:
        row = conn.execute(q, {"hi": unsigned >> 32, "lo": unsigned & 0xFFFFFFFF}).first()
    except Exception:  # pg_stat_activity may be restricted: the error stays useful without it
        return "another session"
    return str(row[0]) if row and row[0] else "another session"
