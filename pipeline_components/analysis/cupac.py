"""CUPAC: the champion's own prediction as the CUPED covariate (Tang et al. 2020).

When no pre-period metric exists, a prediction of the metric from pre-treatment data serves as
the covariate of the same CUPED adjustment (``cuped.py``). Here it is the champion's score of the
features of each unit's *first* logged request: that request is when the unit was assigned, so
its features - and the champion's score of them, whichever arm then served it - cannot depend on
the arm, which keeps the adjusted difference unbiased. Every unit, champion or challenger, is
scored by the same function (the champion model), never by the model that served it.

The covariate is the champion's prediction *of the primary metric*: for ``outcome`` (the label)
its score p; for ``reward`` (1 when the served act/no-act decision was right) its own expected
reward max(p, 1 - p), which is what correlates with the reward.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from pipeline_components.analysis.frames import live_features

#: The champion's score P(positive) for a batch of raw feature mappings (``Variant.predict``).
Scorer = Callable[[Sequence[Mapping[str, Any]]], npt.NDArray[np.float64]]


def first_request_features(served: pd.DataFrame) -> tuple[list[str], list[dict[str, Any]]]:
    """(unit ids, raw features of each unit's first served request that logged features)."""
    feats = live_features(served).drop(columns=["variant"], errors="ignore")
    if feats.empty:
        return [], []
    rows = served.loc[feats.index, ["unit_id", "ts"]].assign(_i=np.arange(len(feats)))
    first = rows.sort_values("ts", kind="stable").drop_duplicates("unit_id")
    records = feats.iloc[first["_i"].to_numpy()].to_dict("records")
    return [str(u) for u in first["unit_id"]], records


def metric_prediction(p: npt.ArrayLike, metric: str) -> npt.NDArray[np.float64]:
    """The champion's prediction of the primary metric from its score p (see module doc)."""
    pa = np.asarray(p, dtype=float)
    return np.maximum(pa, 1.0 - pa) if metric == "reward" else pa


def cupac_covariates(served: pd.DataFrame, scorer: Scorer, metric: str) -> pd.DataFrame:
    """``unit_id, x``: the champion's prediction of ``metric`` for each unit's first request.

    Units whose first request logged no features get no row (CUPED leaves them unadjusted).
    """
    units, records = first_request_features(served)
    if not units:
        return pd.DataFrame({"unit_id": pd.Series(dtype=str), "x": pd.Series(dtype=float)})
    scores = np.asarray(scorer(records), dtype=float)
    if scores.shape != (len(units),):
        raise ValueError(f"champion scorer returned shape {scores.shape} for {len(units)} rows")
    return pd.DataFrame({"unit_id": units, "x": metric_prediction(scores, metric)})
