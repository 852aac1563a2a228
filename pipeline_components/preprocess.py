"""Missing values and category buckets inside every model: what serving feeds is what training saw.

Every trained model starts with the features stage's ``ColumnTransformer``; these are its parts:

* numeric columns: ``MedianImputer`` (``None``/``NaN``/``NA`` -> the training median, whatever
  the container) -> ``StandardScaler``;
* categorical columns: ``CategoryBuckets`` maps each value onto its allowed categories, the
  ``OTHER`` bucket (the long tail beyond the cap, and any value never seen in training) or the
  ``MISSING`` bucket, then a one-hot encoder whose categories are exactly those, so an unseen
  value is an explicit, learned "other" (never a silent all-zero row) and a null is its own level.

The imputation is part of the fitted model (``describe_imputation`` reads it back for lineage),
so the router answers rows with gaps or new values exactly as the model was trained to.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

MISSING = "__missing__"
OTHER = "__other__"


def is_missing(value: Any) -> bool:
    """None, a float NaN or pandas' NA."""
    if value is None or value is pd.NA:
        return True
    return isinstance(value, float) and math.isnan(value)


def _object_array(x: Any) -> np.ndarray:
    arr = x.to_numpy(dtype=object) if isinstance(x, pd.DataFrame) else np.asarray(x, dtype=object)
    return arr.reshape(-1, 1) if arr.ndim == 1 else arr


class MedianImputer(TransformerMixin, BaseEstimator):
    """Numeric columns as float64, every kind of missing value (None, NaN, NA) -> training median.

    The router hands the model object arrays when a row mixes numbers and strings; ``None`` in
    such an array would make sklearn's own imputer raise. A column with no value at all in
    training imputes 0. ``statistics_`` holds the medians (as sklearn's SimpleImputer does).
    """

    def fit(self, x: Any, y: Any = None) -> MedianImputer:
        values = _floats(x)
        with np.errstate(all="ignore"):
            present = ~np.isnan(values)
            med = np.array([np.median(values[present[:, j], j]) if present[:, j].any() else 0.0
                            for j in range(values.shape[1])])
        self.statistics_ = med
        self.n_features_in_ = values.shape[1]
        return self

    def transform(self, x: Any) -> np.ndarray:
        values = _floats(x)
        return np.where(np.isnan(values), self.statistics_, values)

    def get_feature_names_out(self, input_features: Sequence[str] | None = None) -> np.ndarray:
        return np.asarray(input_features if input_features is not None else [], dtype=object)


def _floats(x: Any) -> np.ndarray:
    if not isinstance(x, pd.DataFrame):
        arr = np.asarray(x)
        if arr.dtype.kind in "fiub":
            arr = arr.astype(np.float64, copy=False)
            return arr.reshape(-1, 1) if arr.ndim == 1 else arr
    arr = _object_array(x)
    out = np.full(arr.shape, np.nan)
    present = ~pd.isna(arr)
    out[present] = arr[present].astype(np.float64)
    return out


class CategoryBuckets(TransformerMixin, BaseEstimator):
    """Each categorical value -> itself if allowed, else ``OTHER``; missing -> ``MISSING``.

    Args:
        categories: allowed categories per column, in column order (params.yaml's lists).
    """

    def __init__(self, categories: Sequence[Sequence[str]] = ()) -> None:
        self.categories = categories

    def fit(self, x: Any, y: Any = None) -> CategoryBuckets:
        arr = _object_array(x)
        if arr.shape[1] != len(self.categories):
            raise ValueError(f"CategoryBuckets: {arr.shape[1]} columns but "
                             f"{len(self.categories)} category lists")
        self.n_features_in_ = arr.shape[1]
        return self

    def transform(self, x: Any) -> np.ndarray:
        arr = _object_array(x)
        out = np.empty(arr.shape, dtype=object)
        for j, cats in enumerate(self.categories):
            allowed = {str(c) for c in cats}
            out[:, j] = [MISSING if is_missing(v) else (s if (s := str(v)) in allowed else OTHER)
                         for v in arr[:, j]]
        return out

    def get_feature_names_out(self, input_features: Sequence[str] | None = None) -> np.ndarray:
        return np.asarray(input_features if input_features is not None else [], dtype=object)


def encoder_categories(categories: Sequence[Sequence[str]]) -> list[list[str]]:
    """The one-hot layout: the allowed categories, then the OTHER and MISSING buckets."""
    return [[str(c) for c in cats if str(c) not in (OTHER, MISSING)] + [OTHER, MISSING]
            for cats in categories]


def describe_imputation(model: Any) -> dict[str, str]:
    """Column -> how a missing value is filled, read from a fitted model (lineage, reports)."""
    first = model.steps[0][1] if hasattr(model, "steps") else model
    out: dict[str, str] = {}
    for _, tr, cols in getattr(first, "transformers_", []):
        steps = dict(getattr(tr, "steps", []))
        imputer = steps.get("impute")
        if imputer is not None and hasattr(imputer, "statistics_"):  # MedianImputer
            for col, value in zip(cols, imputer.statistics_, strict=False):
                out[str(col)] = f"median {float(value):.6g}"
        elif "buckets" in steps:
            out.update({str(c): f"category {MISSING!r}" for c in cols})
    return out
