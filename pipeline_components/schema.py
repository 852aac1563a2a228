"""Schema inference: read a user's table and propose roles, types, categories, ranges, nulls.

``infer_schema(df, id_column, target_column)`` is pure (a DataFrame in, a frozen ``Schema`` out),
so tests call it directly; ``abx init`` reads the file, calls it and writes the proposal into
params.yaml (``params_file.write_schema``) for the user to review and commit. Rules:

* the id column must be unique and non-null; the target must hold exactly two values, 0 and 1;
* numbers (not booleans) are numeric features, with an allowed range padded by the observed span
  (never below 0 for a column that never was) and an allowed null share above the observed one;
* text, booleans and pandas categories are categorical: the most frequent levels up to
  ``max_categories`` (each seen at least ``min_count`` times) are kept, the long tail goes to the
  model's "other" bucket (``validation.columns.<col>.other: true``);
* a text column that is nearly unique per row (names, free text), a constant column and an
  all-null column are not features: they are listed as ignored, with the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

from pipeline_components.errors import DataError

Role = Literal["id", "target", "covariate", "numeric", "categorical", "ignored"]
MAX_CATEGORIES = 20
MIN_COUNT = 5
TEXT_UNIQUE_SHARE = 0.5  # a text column with more distinct values than this share is free text


@dataclass(frozen=True)
class ColumnSchema:
    """What inference proposes for one column, and why (``note`` becomes the params comment)."""

    name: str
    role: Role
    dtype: str
    null_fraction: float
    n_distinct: int
    observed: tuple[float, float] | None = None  # numeric min, max
    range: tuple[float, float] | None = None  # proposed allowed range
    max_null_fraction: float = 0.0  # proposed allowed null share
    categories: list[str] = field(default_factory=list)
    other_share: float = 0.0  # share of non-null rows in the "other" bucket
    note: str = ""

    @property
    def capped(self) -> bool:
        return self.role == "categorical" and len(self.categories) < self.n_distinct


@dataclass(frozen=True)
class Schema:
    """The proposal for a whole table."""

    rows: int
    id_column: str
    target_column: str
    covariate_column: str | None
    columns: list[ColumnSchema]

    def by_role(self, role: Role) -> list[ColumnSchema]:
        return [c for c in self.columns if c.role == role]

    @property
    def numeric_features(self) -> list[str]:
        return [c.name for c in self.by_role("numeric")]

    @property
    def categorical_features(self) -> dict[str, list[str]]:
        return {c.name: list(c.categories) for c in self.by_role("categorical")}


def _round(x: float) -> float:
    return float(f"{x:.6g}")


def allowed_null_fraction(observed: float) -> float:
    """Room above the observed null share (new batches vary), rounded up; 0 stays 0."""
    if observed <= 0:
        return 0.0
    return min(1.0, math.ceil((observed * 1.5 + 0.01) * 1000) / 1000)


def allowed_range(lo: float, hi: float) -> tuple[float, float]:
    """The observed range padded by its span on each side (not below 0 if never negative)."""
    span = (hi - lo) or max(abs(hi), 1.0)
    low = 0.0 if lo >= 0 else lo - span
    return _round(low), _round(hi + span)


def _check_id(df: pd.DataFrame, col: str) -> None:
    if col not in df.columns:
        raise DataError(f"--id {col!r}: no such column (columns: {list(df.columns)})")
    s = df[col]
    if s.isna().any():
        raise DataError(f"id column {col!r}: {int(s.isna().sum())} null ids; one row per unit "
                        "with a unique id is needed")
    dupes = int(s.astype(str).duplicated().sum())
    if dupes:
        raise DataError(f"id column {col!r}: {dupes} duplicated ids, e.g. "
                        f"{s[s.astype(str).duplicated()].iloc[0]!r}; one row per unit is needed")


def _check_target(df: pd.DataFrame, col: str) -> None:
    if col not in df.columns:
        raise DataError(f"--target {col!r}: no such column (columns: {list(df.columns)})")
    s = df[col]
    if s.isna().any():
        raise DataError(f"target column {col!r}: {int(s.isna().sum())} rows without a label")
    values = sorted(set(s.tolist()), key=str)
    if not set(values) <= {0, 1} or len(values) != 2:
        shown = ", ".join(repr(v) for v in values[:5])
        raise DataError(f"target column {col!r}: expected the two values 0 and 1, got {shown}"
                        f"{' ...' if len(values) > 5 else ''}; recode it as 0/1 first")


def _numeric(name: str, s: pd.Series, role: Role) -> ColumnSchema:
    x = pd.to_numeric(s, errors="coerce").astype(float)
    nulls = float(x.isna().mean())
    lo, hi = float(x.min()), float(x.max())
    rng = allowed_range(lo, hi)
    note = f"{str(s.dtype)}, observed [{_round(lo)}, {_round(hi)}]"
    if nulls:
        note += f", {nulls:.1%} null (median-imputed)"
    return ColumnSchema(name, role, str(s.dtype), nulls, int(x.nunique()), (lo, hi), rng,
                        allowed_null_fraction(nulls), note=note)


def _categorical(name: str, s: pd.Series, max_categories: int, min_count: int) -> ColumnSchema:
    text = s.dropna().astype(str)
    nulls = float(s.isna().mean())
    counts = text.value_counts(sort=True)
    kept = [str(v) for v, c in counts.items() if c >= min_count][:max_categories]
    other = float(counts.drop(kept).sum() / max(len(text), 1))
    note = f"text, {len(counts)} levels"
    if len(kept) < len(counts):
        note += f": top {len(kept)} kept, {other:.1%} of rows -> other"
    if nulls:
        note += f", {nulls:.1%} null (own level)"
    return ColumnSchema(name, "categorical", str(s.dtype), nulls, int(len(counts)),
                        max_null_fraction=allowed_null_fraction(nulls), categories=kept,
                        other_share=other, note=note)


def _ignored(name: str, s: pd.Series, why: str) -> ColumnSchema:
    return ColumnSchema(name, "ignored", str(s.dtype), float(s.isna().mean()),
                        int(s.nunique()), note=f"ignored: {why}")


def infer_column(
    name: str, s: pd.Series, max_categories: int = MAX_CATEGORIES, min_count: int = MIN_COUNT
) -> ColumnSchema:
    """Propose a role (numeric, categorical or ignored) and rules for one feature column."""
    present = s.dropna()
    if present.empty:
        return _ignored(name, s, "every value is null")
    if present.nunique() == 1:
        return _ignored(name, s, f"constant ({present.iloc[0]!r})")
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        return _numeric(name, s, "numeric")
    distinct = present.astype(str).nunique()
    if distinct > max(TEXT_UNIQUE_SHARE * len(present), max_categories):
        return _ignored(name, s, f"free text ({distinct} distinct values in {len(present)} "
                                 "rows); not a category")
    col = _categorical(name, s, max_categories, min_count)
    if not col.categories:
        return _ignored(name, s, f"no level seen {min_count}+ times")
    return col


def infer_schema(
    df: pd.DataFrame, id_column: str, target_column: str, *,
    covariate_column: str | None = None, max_categories: int = MAX_CATEGORIES,
    min_count: int = MIN_COUNT,
) -> Schema:
    """Propose the schema of a table: roles, types, categories, ranges, null shares.

    Args:
        df: the table, one row per unit.
        id_column: the unit id (unique, non-null).
        target_column: the binary 0/1 label.
        covariate_column: optional pre-experiment numeric value per unit (CUPED).
        max_categories: cap on the levels kept per categorical column (the rest -> other).
        min_count: a level needs this many rows to be kept.

    Raises:
        DataError: a named column is missing, the id is not unique, or the target not 0/1.
    """
    _check_id(df, id_column)
    _check_target(df, target_column)
    cols: list[ColumnSchema] = [
        ColumnSchema(id_column, "id", str(df[id_column].dtype), 0.0,
                     int(df[id_column].nunique()), note="unit id"),
        ColumnSchema(target_column, "target", str(df[target_column].dtype), 0.0, 2,
                     note=f"binary label, {float(df[target_column].mean()):.1%} positive"),
    ]
    if covariate_column is not None:
        if covariate_column not in df.columns:
            raise DataError(f"--covariate {covariate_column!r}: no such column")
        if not pd.api.types.is_numeric_dtype(df[covariate_column]):
            raise DataError(f"covariate column {covariate_column!r}: must be numeric, "
                            f"got {df[covariate_column].dtype}")
        cols.append(_numeric(covariate_column, df[covariate_column], "covariate"))
    taken = {id_column, target_column, covariate_column}
    cols += [infer_column(str(c), df[c], max_categories, min_count)
             for c in df.columns if c not in taken]
    return Schema(len(df), id_column, target_column, covariate_column, cols)
