"""``abx feedback import FILE``: delayed outcomes from a warehouse export into the feedback log.

The file (CSV or Parquet) has ``outcome``, ``timestamp`` (epoch seconds or ISO 8601) and
``request_id`` and/or ``unit_id`` per row; ``reward`` and ``feedback_id`` are optional. Every row
is checked before anything is written: the first bad records are named by row (1-based, as a
spreadsheet shows them after the header) and column, and nothing is stored. Each row goes to the
experiment that served it: by request id, else the experiment of the unit's latest prediction at
or before the outcome's timestamp. Rows keep a ``feedback_key`` the store holds unique, so importing
the same file twice (or a file overlapping what the endpoint already received) changes nothing.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.engine import Engine

from pipeline_components.config import Config
from pipeline_components.errors import DataError
from pipeline_components.serving.feedback import check_outcome, feedback_row
from pipeline_components.store import feedback, insert_rows, make_engine, predictions

UNMATCHED = "unmatched"
_CHUNK = 500


def read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: feedback file not found")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if path.suffix.lower() in (".csv", ".txt"):
            return pd.read_csv(path, dtype={"request_id": str, "unit_id": str,
                                            "feedback_id": str})
    except Exception as exc:
        raise DataError(f"{path}: cannot read: {exc}") from exc
    raise DataError(f"{path}: unknown format {path.suffix!r} (use .csv or .parquet)")


def _timestamp(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v) if math.isfinite(float(v)) and v > 0 else None
    try:
        ts = pd.Timestamp(v)
    except (ValueError, TypeError):
        return None
    if ts is pd.NaT or pd.isna(ts):
        return None
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return float(ts.timestamp())


def _text(v: Any) -> str | None:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return None
    s = str(v).strip()
    return s or None


def _numeric(v: Any) -> Any:
    """A CSV column with one bad cell is read as text: turn the numeric cells back to numbers."""
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return v
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def validate_rows(cfg: Config, df: pd.DataFrame, path: Path) -> list[dict[str, Any]]:
    """Clean records, or DataError naming the first bad rows and their column."""
    cols = set(df.columns)
    missing = [c for c in ("outcome", "timestamp") if c not in cols]
    if not {"request_id", "unit_id"} & cols:
        missing.append("request_id or unit_id")
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; have {sorted(cols)}")
    problems: list[str] = []
    out = []
    for i, rec in enumerate(df.to_dict(orient="records"), start=1):
        rid, uid = _text(rec.get("request_id")), _text(rec.get("unit_id"))
        ts = _timestamp(rec.get("timestamp"))
        reward, outcome = _numeric(rec.get("reward")), _numeric(rec.get("outcome"))
        problem = None
        if rid is None and uid is None:
            problem = "request_id/unit_id: one of them is required"
        elif rid is not None and len(rid) > 64:
            problem = "request_id: longer than 64 characters"
        elif ts is None:
            problem = f"timestamp: expected epoch seconds or ISO 8601, got {rec['timestamp']!r}"
        else:
            problem = check_outcome(cfg, outcome, reward)
        if problem:
            problems.append(f"row {i}, column {problem}")
            if len(problems) >= 10:
                break
            continue
        out.append({"request_id": rid, "unit_id": uid, "outcome": outcome,
                    "reward": reward, "feedback_id": _text(rec.get("feedback_id")), "ts": ts})
    if problems:
        raise DataError(f"{path}: {len(problems)} bad record(s), nothing imported: "
                        + "; ".join(problems))
    return out


def _experiments_by_request(engine: Engine, ids: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    with engine.connect() as conn:
        for k in range(0, len(ids), _CHUNK):
            q = select(predictions.c.request_id, predictions.c.experiment_id).where(
                predictions.c.request_id.in_(ids[k:k + _CHUNK]), predictions.c.served)
            found.update({r: e for r, e in conn.execute(q)})
    return found


def _experiment_by_unit(engine: Engine, rows: list[dict[str, Any]]) -> dict[int, str]:
    """Row index -> experiment of the unit's latest served prediction at or before its ts."""
    units = sorted({r["unit_id"] for r in rows if r["unit_id"]})
    seen: list[tuple[str, float, str]] = []
    with engine.connect() as conn:
        for k in range(0, len(units), _CHUNK):
            q = select(predictions.c.unit_id, predictions.c.ts, predictions.c.experiment_id
                       ).where(predictions.c.unit_id.in_(units[k:k + _CHUNK]),
                               predictions.c.served)
            seen.extend((u, float(t), e) for u, t, e in conn.execute(q))
    by_unit: dict[str, list[tuple[float, str]]] = {}
    for u, t, e in sorted(seen, key=lambda x: x[1]):
        by_unit.setdefault(u, []).append((t, e))
    out = {}
    for i, r in enumerate(rows):
        before = [e for t, e in by_unit.get(r["unit_id"] or "", []) if t <= r["ts"]]
        if before:
            out[i] = before[-1]
    return out


def import_feedback(cfg: Config, path: Path, experiment_id: str | None = None
                    ) -> dict[str, Any]:
    """Validate, match and store ``path``'s outcomes; returns counts (idempotent)."""
    rows = validate_rows(cfg, read_table(path), path)
    engine = make_engine(cfg.store_url)
    by_req = _experiments_by_request(engine, [r["request_id"] for r in rows if r["request_id"]])
    unit_idx = [i for i, r in enumerate(rows) if not r["request_id"]]
    found = _experiment_by_unit(engine, [rows[i] for i in unit_idx])
    by_unit = {unit_idx[p]: e for p, e in found.items()}
    stored, counts = [], {"by_request": 0, "by_unit": 0, "unmatched": 0}
    for i, r in enumerate(rows):
        if r["request_id"]:
            exp, kind = by_req.get(r["request_id"]), "by_request"
        else:
            exp, kind = by_unit.get(i), "by_unit"
        counts[kind if exp else "unmatched"] += 1
        stored.append(feedback_row(exp or experiment_id or UNMATCHED, r["ts"], r,
                                   key_ts=r["ts"]))
    before = _count(engine)
    insert_rows(engine, feedback, stored)
    added = _count(engine) - before
    return {"file": str(path), "rows": len(rows), "added": added,
            "already_stored": len(rows) - added, **counts}


def _count(engine: Engine) -> int:
    from sqlalchemy import func

    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(feedback)).scalar_one())
