"""A cross-machine lock in PostgreSQL (session advisory lock) for state shared by Celery workers.

``fcntl`` file locks only hold on one machine (and not on every shared filesystem). When the
prediction store is PostgreSQL (the scale-out profile), the registered model's alias lock is a
``pg_try_advisory_lock`` on that database instead: every worker that can write the store sees it,
and PostgreSQL releases it when the holder's connection dies (a crashed task cannot leave it held).
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterator

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from pipeline_components.errors import ExperimentLockedError


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for ``name`` (advisory locks take a bigint)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big",
                          signed=True)


def is_postgres(url: str | None) -> bool:
    return bool(url) and str(url).startswith("postgresql")


@contextlib.contextmanager
def pg_advisory_lock(url: str, name: str, timeout_s: float, holder: str) -> Iterator[str]:
    """Hold the advisory lock ``name`` on the database at ``url`` for the block.

    Raises:
        ExperimentLockedError: another session held it for longer than ``timeout_s``.
    """
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    engine = create_engine(url, poolclass=NullPool)
    key = lock_key(name)
    deadline = time.monotonic() + timeout_s
    try:
        with engine.connect() as conn:
            while not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():
                conn.rollback()
                if time.monotonic() >= deadline:
                    raise ExperimentLockedError(
                        f"{name}: locked in PostgreSQL (advisory lock {key}) by another run; "
                        f"waited {timeout_s:.0f} s (canary.lock_timeout_s)")
                time.sleep(0.2)
            conn.commit()
            try:
                yield f"pg-advisory:{key} ({holder})"
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
    finally:
        engine.dispose()
