"""A graceful stop of an endpoint replica runs its whole shutdown: every answered request is in
the prediction store, the replica leaves the control state (so the next attach does not wait on a
replica that is gone) and nothing in its log says the shutdown failed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from pipeline_components.config import Config
from pipeline_components.deploy import LocalBackend
from pipeline_components.serving import operations as ops
from pipeline_components.serving.testing import send_load
from pipeline_components.store import make_engine, predictions

pytestmark = pytest.mark.slow


def test_a_stopped_replica_flushes_and_leaves_the_control_state(
        make_cfg: Callable[..., Config], rows: list[dict[str, Any]]) -> None:
    cfg = make_cfg({"serving.flush_interval_s": 5.0})  # rows still queued when the stop comes
    backend = LocalBackend()
    ops.ensure_endpoint(cfg, "test")
    dep = backend.start_endpoint(cfg)[0]
    try:
        answers = send_load(dep.url, [{"unit_id": f"u{i}", "features": rows[i % len(rows)]}
                                      for i in range(120)], concurrency=8)
        assert all(getattr(a, "status_code", None) == 200 for a in answers)
        assert len(ops.open_control(cfg).replicas(cfg.endpoint.name)) == 1
    finally:
        backend.stop_endpoint(cfg)
    control = ops.open_control(cfg)
    ops._STORES.clear()
    assert control.replicas(cfg.endpoint.name) == []
    assert "replica_stop" in [e["kind"] for e in control.events(cfg.endpoint.name)]
    log = Path(dep.log_path).read_text()
    assert "shutdown failed" not in log and "Traceback" not in log, log[-2000:]
    with make_engine(cfg.store_url).connect() as conn:
        assert conn.execute(select(func.count()).select_from(predictions)).scalar() == 120
