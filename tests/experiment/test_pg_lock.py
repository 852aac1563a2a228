"""The registered model's alias lock in PostgreSQL (scale-out: workers on several machines)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from pipeline_components.aliases import alias_lock
from pipeline_components.config import Config, load_config
from pipeline_components.errors import ExperimentLockedError

pytestmark = pytest.mark.postgres
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def pg_cfg(tmp_path: Path) -> Iterator[Config]:
    name = f"abx_t_{uuid.uuid4().hex}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield load_config(None, {"experiment.state_dir": str(tmp_path / "a"),
                                 "serving.store_url": f"postgresql://postgres@127.0.0.1/{name}"})
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_lock_is_held_in_the_database_not_on_one_disk(pg_cfg: Config, tmp_path: Path) -> None:
    # Another "machine": same store, a different state dir (no shared file to flock).
    other = pg_cfg.model_copy(update={"experiment": pg_cfg.experiment.model_copy(
        update={"state_dir": tmp_path / "b", "id": "other"})})
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with alias_lock(pg_cfg, timeout_s=5):
            held.set()
            release.wait(20)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert held.wait(30)
        with pytest.raises(ExperimentLockedError, match="is held by abx experiment"):
            with alias_lock(other, timeout_s=0.5):
                pass
    finally:
        release.set()
        t.join(20)
    with alias_lock(other, timeout_s=5):  # released: the other run gets it
        pass
    assert not (tmp_path / "a" / "locks").exists()  # no file lock was taken
    assert not (tmp_path / "a" / "locks.db").exists()  # nor a SQLite one
