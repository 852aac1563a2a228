"""Outcome feedback: who may send it, what a valid outcome is, and its idempotency key.

``/feedback`` needs the client key (header ``X-ABX-Client-Key``; separate from the admin token:
reporting outcomes must not grant moving traffic). An outcome must be a finite number, 0 or 1 when
``analysis.metric_type`` is binary; a reward, when given, a finite number. Each row carries a
``feedback_key`` that the store keeps unique, so a retried POST or a re-imported file is stored
once: ``r:<request_id>`` when the outcome names its request, ``f:<feedback_id>`` when the client
gives its own id, ``u:<unit_id>@<timestamp>`` for a unit-level outcome from an import.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from fastapi import HTTPException, Request

from pipeline_components.config import Config
from pipeline_components.serving.keys import matches

CLIENT_KEY_HEADER = "x-abx-client-key"


def require_client_key(request: Request) -> None:
    """401 without the key, 403 with a wrong one, 503 when the endpoint has none configured."""
    expected: str | None = getattr(request.app.state, "client_key", None)
    if not expected:
        raise HTTPException(503, "feedback disabled: set endpoint.client_key or ABX_CLIENT_KEY")
    given = request.headers.get(CLIENT_KEY_HEADER)
    if not given:
        raise HTTPException(401, "X-ABX-Client-Key: client key required")
    if not matches(given.strip(), expected):
        raise HTTPException(403, "X-ABX-Client-Key: invalid client key")


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    try:
        f = float(v)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


def check_outcome(cfg: Config, outcome: Any, reward: Any, where: str = "") -> str | None:
    """None when the values are valid, else a message naming the field."""
    out = _number(outcome)
    if out is None:
        return f"{where}outcome: expected a finite number, got {str(outcome)[:40]!r}"
    if cfg.analysis.metric_type == "binary" and out not in (0.0, 1.0):
        return (f"{where}outcome: expected 0 or 1 (analysis.metric_type is binary), "
                f"got {out!r}")
    if reward is not None and _number(reward) is None:
        return f"{where}reward: expected a finite number, got {str(reward)[:40]!r}"
    return None


def feedback_key(request_id: str | None, unit_id: str | None, feedback_id: str | None,
                 ts: float | None = None) -> str | None:
    if request_id:
        return f"r:{request_id}"
    if feedback_id:
        return f"f:{feedback_id}"
    if unit_id and ts is not None:
        return f"u:{unit_id}@{ts:.6f}"
    return None


def feedback_row(experiment_id: str, ts: float, fields: Mapping[str, Any],
                 key_ts: float | None = None) -> dict[str, Any]:
    """The stored row for one outcome (``fields``: request_id, unit_id, outcome, reward, ...)."""
    rid, uid = fields.get("request_id"), fields.get("unit_id")
    reward = fields.get("reward")
    return {"experiment_id": experiment_id, "ts": ts, "request_id": rid, "unit_id": uid,
            "outcome": float(fields["outcome"]),
            "reward": None if reward is None else float(reward),
            "feedback_key": feedback_key(rid, uid, fields.get("feedback_id"), key_ts)}
