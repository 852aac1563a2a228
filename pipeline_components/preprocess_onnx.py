"""skl2onnx converters for the preprocessing steps of ``preprocess.py`` (compiled serving).

``MedianImputer`` is ``Where(IsNaN(x), medians, x)`` on the float tensors the compiled runtime
feeds (any float type, so the float64 preprocessing of the tree path works too); ``CategoryBuckets``
maps each string column through an ``ai.onnx.ml.LabelEncoder`` whose default is the ``OTHER``
level. A null cannot travel in an ONNX string tensor: ``onnx_feeds`` sends it as the
``MISSING`` level (and a numeric null as NaN), which is what the sklearn steps make of it.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from pipeline_components.preprocess import (
    MISSING,
    OTHER,
    CategoryBuckets,
    MedianImputer,
    is_missing,
)


def _same_shape(operator: Any) -> None:
    inp = operator.inputs[0]
    operator.outputs[0].type = inp.type.__class__(inp.type.shape)


def _convert_imputer(scope: Any, operator: Any, container: Any) -> None:
    from onnx import TensorProto

    est, source = operator.raw_operator, operator.inputs[0].full_name
    double = type(operator.inputs[0].type).__name__ == "DoubleTensorType"
    medians = scope.get_unique_variable_name("medians")
    container.add_initializer(medians, TensorProto.DOUBLE if double else TensorProto.FLOAT,
                              [len(est.statistics_)], [float(v) for v in est.statistics_])
    isnan = scope.get_unique_variable_name("isnan")
    container.add_node("IsNaN", source, isnan, name=scope.get_unique_operator_name("ImputeNaN"))
    container.add_node("Where", [isnan, medians, source], operator.outputs[0].full_name,
                       name=scope.get_unique_operator_name("Impute"))


def _convert_buckets(scope: Any, operator: Any, container: Any) -> None:
    from onnx import TensorProto

    est, source = operator.raw_operator, operator.inputs[0].full_name
    columns = []
    for j, cats in enumerate(est.categories):
        index = scope.get_unique_variable_name("bucket_index")
        container.add_initializer(index, TensorProto.INT64, [1], [j])
        col = scope.get_unique_variable_name("bucket_column")
        container.add_node("Gather", [source, index], col, axis=1,
                           name=scope.get_unique_operator_name("BucketGather"))
        mapped = scope.get_unique_variable_name("bucket_mapped")
        allowed = [str(c) for c in cats] + [MISSING]  # null arrives as MISSING (onnx_feeds)
        container.add_node("LabelEncoder", col, mapped, op_domain="ai.onnx.ml", op_version=2,
                           keys_strings=allowed, values_strings=allowed, default_string=OTHER,
                           name=scope.get_unique_operator_name("BucketMap"))
        columns.append(mapped)
    container.add_node("Concat", columns, operator.outputs[0].full_name, axis=1,
                       name=scope.get_unique_operator_name("BucketConcat"))


def onnx_feeds(x: np.ndarray, cols: list[tuple[int, str, Any]]) -> dict[str, np.ndarray]:
    """ONNX feeds of a batch: one (rows, 1) tensor per column; a null is sent as NaN (numbers)
    or the ``MISSING`` level (text), which is what the sklearn steps make of it."""
    feeds = {}
    for i, name, dtype in cols:
        col = x[:, i:i + 1]
        if dtype is None:
            if any(is_missing(v) for v in col[:, 0]):
                col = np.array([[MISSING if is_missing(v) else v] for v in col[:, 0]],
                               dtype=object)
            feeds[name] = col.astype(object)
        else:
            try:
                feeds[name] = col.astype(dtype)
            except TypeError:  # None in an object column
                feeds[name] = np.array([[np.nan if is_missing(v) else v] for v in col[:, 0]],
                                       dtype=dtype)
    return feeds


@functools.cache
def register() -> None:
    """Teach skl2onnx our two steps (once per process)."""
    from skl2onnx import update_registered_converter

    update_registered_converter(MedianImputer, "AbxMedianImputer", _same_shape,
                                _convert_imputer)
    update_registered_converter(CategoryBuckets, "AbxCategoryBuckets", _same_shape,
                                _convert_buckets)
