"""From store rows to analysable frames: unit assignment, the feedback join, per-unit metrics.

The unit (user) is the unit of randomisation, so the primary metric is a per-unit mean. A unit
belongs to the first variant that served it; when a canary ramp moves it to another variant
later, its later requests are left out of the primary metric (counted as ``switched``), so no
unit counts twice. Feedback joins predictions by request id; feedback that names only a unit is
credited to the unit's variant. Requests whose variant was forced by the QA header
(``assignment == "forced"``) are left out of every metric: they were not randomised.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd

from pipeline_components.errors import AnalysisError

PRED_COLUMNS = ("ts", "request_id", "unit_id", "variant", "prediction", "latency_ms", "status",
                "served")
FEEDBACK_COLUMNS = ("ts", "request_id", "unit_id", "outcome", "reward")


@dataclass(frozen=True)
class Prepared:
    served: pd.DataFrame  # served prediction rows (+ outcome/reward where labelled)
    shadow: pd.DataFrame  # shadow rows (+ outcome where labelled)
    assignment: pd.DataFrame  # unit_id, variant, first_ts
    unit_values: pd.DataFrame  # unit_id, variant, value (per-unit mean of the primary metric)
    switched_units: int


def check_columns(df: pd.DataFrame, needed: tuple[str, ...], table: str) -> None:
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise AnalysisError(f"{table} rows lack column(s) {missing}; expected {list(needed)}")


def _latest_feedback(feedback: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-request feedback, unit-only feedback), the latest row winning on duplicates."""
    fb = feedback.sort_values("ts")
    by_req = fb[fb["request_id"].notna()].drop_duplicates("request_id", keep="last")
    unit_only = fb[fb["request_id"].isna() & fb["unit_id"].notna()]
    return by_req[["request_id", "outcome", "reward"]], unit_only


def prepare(predictions: pd.DataFrame, feedback: pd.DataFrame, metric: str) -> Prepared:
    """Assign units, join feedback and compute the per-unit primary metric."""
    check_columns(predictions, PRED_COLUMNS, "predictions")
    check_columns(feedback, FEEDBACK_COLUMNS, "feedback")
    preds = predictions.astype({"unit_id": str, "request_id": str, "variant": str})
    if "assignment" in preds.columns:  # QA requests (X-ABX-Variant) are not experiment traffic
        preds = preds[preds["assignment"].fillna("hash") != "forced"]
    preds = preds.assign(served=preds["served"].fillna(True).astype(bool)).sort_values("ts")
    by_req, unit_only = _latest_feedback(feedback)
    joined = preds.merge(by_req, on="request_id", how="left")
    served, shadow = joined[joined["served"]], joined[~joined["served"]]
    first = served.drop_duplicates("unit_id", keep="first")
    assignment = first[["unit_id", "variant", "ts"]].rename(columns={"ts": "first_ts"})
    own = served.merge(assignment[["unit_id", "variant"]], on=["unit_id", "variant"])
    switched = int(served.groupby("unit_id")["variant"].nunique().gt(1).sum())
    values = own[["unit_id", "variant", metric]].rename(columns={metric: "value"})
    if len(unit_only):
        extra = unit_only.astype({"unit_id": str}).merge(assignment[["unit_id", "variant"]],
                                                         on="unit_id")
        values = pd.concat([values, extra[["unit_id", "variant", metric]].rename(
            columns={metric: "value"})])
    unit_values = values.dropna(subset=["value"]).groupby(["unit_id", "variant"], as_index=False)[
        "value"].mean()
    return Prepared(served, shadow, assignment, unit_values, switched)


def live_features(served: pd.DataFrame) -> pd.DataFrame:
    """The raw feature dicts of served rows as columns (plus variant), for drift."""
    rows = served[served["features"].notna()] if "features" in served else served.iloc[:0]
    if rows.empty:
        return pd.DataFrame(columns=["variant"])
    feats = pd.DataFrame([_as_dict(f) for f in rows["features"]], index=rows.index)
    return feats.assign(variant=rows["variant"].to_numpy())


def _as_dict(value: object) -> dict:
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}
