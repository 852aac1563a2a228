"""An experiment run elsewhere, as a table of units, arms and outcomes, in the log's shape.

``abx analyze --from FILE --unit COL --arm COL --outcome COL`` turns such a table into the
prediction/feedback frames the router would have logged (one served request per unit, its
outcome as both ``outcome`` and ``reward``), so the very same analysis code decides on it. The
control arm is renamed to the analysis' control (``champion``); other arm names are kept.
"""

from __future__ import annotations

import pandas as pd

from pipeline_components.analysis.effects import CONTROL
from pipeline_components.errors import DataError


def frames_from_units(
    df: pd.DataFrame, *, unit: str, arm: str, outcome: str, control: str | None = None,
    cluster: str | None = None, experiment_id: str = "external", source: str = "table",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(predictions, feedback) frames for ``analyze_frames`` from a units table.

    Args:
        df: one row per unit (a unit seen twice keeps its first arm, as the router would).
        unit, arm, outcome: column names; outcome numeric (0/1 for rates).
        control: the control arm's value; default ``champion`` if present, else the first arm.
        cluster: optional column of each unit's cluster (logged as a feature for
            ``analysis.cluster_column``).

    Raises:
        DataError: a column is missing, the outcome is not numeric, or there is one arm only.
    """
    needed = [c for c in (unit, arm, outcome, cluster) if c]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise DataError(f"{source}: no column(s) {missing} (columns: {list(df.columns)})")
    y = pd.to_numeric(df[outcome], errors="coerce")
    bad = df[outcome][y.isna() & df[outcome].notna()]
    if not bad.empty:
        raise DataError(f"{source}: column {outcome!r} (outcome) must be numeric, got "
                        f"{bad.iloc[0]!r}")
    arms = [str(a) for a in pd.unique(df[arm].astype(str))]
    if len(arms) < 2:
        raise DataError(f"{source}: column {arm!r} (arm) has {len(arms)} arm(s) {arms}; "
                        "need a control and at least one treatment")
    ctrl = control or (CONTROL if CONTROL in arms else sorted(arms)[0])
    if ctrl not in arms:
        raise DataError(f"{source}: control arm {ctrl!r} not in column {arm!r} ({arms})")
    variant = df[arm].astype(str).replace({ctrl: CONTROL})
    n = len(df)
    request_id = [f"{source}-{i}" for i in range(n)]
    features = ([{cluster: v} for v in df[cluster].tolist()] if cluster else [None] * n)
    preds = pd.DataFrame({
        "experiment_id": experiment_id, "ts": range(n), "request_id": request_id,
        "unit_id": df[unit].astype(str).to_numpy(), "variant": variant.to_numpy(),
        "model_version": "external", "prediction": float("nan"), "latency_ms": 0.0,
        "status": "ok", "served": True, "features": features, "assignment": "hash"})
    fb = pd.DataFrame({"experiment_id": experiment_id, "ts": range(n),
                       "request_id": request_id, "unit_id": preds["unit_id"],
                       "outcome": y.to_numpy(), "reward": y.to_numpy()})
    return preds, fb[fb["outcome"].notna()]


def parse_planned(text: str, arms: list[str]) -> dict[str, float]:
    """``0.5,0.5`` (in arm order, control first) or ``champion=0.5,b=0.5`` -> weights."""
    items = [p.strip() for p in text.split(",") if p.strip()]
    try:
        if all("=" in p for p in items):
            return {k.strip(): float(v) for k, v in (p.split("=", 1) for p in items)}
        if len(items) != len(arms):
            raise ValueError(f"{len(items)} shares for {len(arms)} arms {arms}")
        return dict(zip(arms, (float(p) for p in items), strict=True))
    except ValueError as exc:
        raise DataError(f"--planned {text!r}: {exc}") from None
