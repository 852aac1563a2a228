"""Make a fitted sklearn pipeline accept numpy rows in its trained column order.

A ``ColumnTransformer`` fitted on a DataFrame selects columns by name and refuses a numpy array
("Specifying the columns using strings is only supported for dataframes"). Building a 1-row
DataFrame per request costs ~3x the CPU of the whole numpy request, so instead we rewrite a
*copy* of the fitted estimator once: name selections become positions in the trained order and
the stored ``feature_names_in_`` go (they only exist to warn about name mismatches, which cannot
happen: the router builds every row from those very names). ``verify`` checks the rewrite against
the original on probe rows; the caller falls back to DataFrames if it disagrees.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np


def _children(est: Any) -> list[Any]:
    kids: list[Any] = []
    if hasattr(est, "steps"):
        kids += [s for _, s in est.steps if s not in (None, "passthrough")]
    if hasattr(est, "transformers_"):
        kids += [t for _, t, _ in est.transformers_ if not isinstance(t, str)]
    if hasattr(est, "transformer_list"):
        kids += [t for _, t in est.transformer_list if not isinstance(t, str)]
    return kids


def _positional(cols: Any, index: dict[str, int]) -> Any:
    if isinstance(cols, str):
        return index[cols]
    if isinstance(cols, (list, tuple, np.ndarray)) and len(cols) and isinstance(cols[0], str):
        return [index[c] for c in cols]
    return cols


def _rewrite(est: Any, index: dict[str, int], top: bool) -> None:
    if top and hasattr(est, "transformers_"):
        est.transformers_ = [(n, t, _positional(c, index)) for n, t, c in est.transformers_]
    if "feature_names_in_" in getattr(est, "__dict__", {}):
        del est.__dict__["feature_names_in_"]
    for child in _children(est):
        _rewrite(child, index, top=False)


def numpy_ready(model: Any, names: Sequence[str]) -> Any:
    """A copy of ``model`` whose first column selection is by position in ``names``.

    Only the outermost ``ColumnTransformer`` (the pipeline's first step, or the model itself)
    sees the raw columns, so only it is rewritten; inner estimators just lose their names.
    """
    fast = copy.deepcopy(model)
    index = {n: i for i, n in enumerate(names)}
    first = fast.steps[0][1] if hasattr(fast, "steps") else fast
    _rewrite(first, index, top=True)
    for child in _children(fast):
        if child is not first:
            _rewrite(child, index, top=False)
    if "feature_names_in_" in fast.__dict__:
        del fast.__dict__["feature_names_in_"]
    return fast


def verify(original: Any, fast: Any, frame: Any, rows: np.ndarray) -> bool:
    """True when ``fast`` on numpy ``rows`` matches ``original`` on the same rows as a DataFrame."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a names warning per call would cost on the hot path
            got = fast.predict_proba(rows)
        want = original.predict_proba(frame)
    except Exception:  # any failure means: do not trust the rewrite
        return False
    return bool(np.allclose(got, want, rtol=1e-9, atol=1e-12))
