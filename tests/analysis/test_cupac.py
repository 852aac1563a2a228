"""CUPAC: the champion's prediction of each unit's metric (from its first request) as the CUPED
covariate, chosen by ``analysis.cuped_covariate``; a real sklearn model is the champion."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from pipeline_components.analysis import analyze_frames
from pipeline_components.analysis.cupac import cupac_covariates, metric_prediction
from pipeline_components.analysis.cuped import cuped
from pipeline_components.analysis.summaries import RegressionSummary
from pipeline_components.config import Config

HALF = {"champion": 0.5, "challenger": 0.5}
COLS = ["f0", "f1", "f2"]


def _world(seed: int, n_units: int = 3000) -> tuple[pd.DataFrame, pd.DataFrame, Any]:
    """A log of units with 1-3 requests each whose label depends on the first request's features,
    and a champion (logistic regression) trained on separate rows."""
    rng = np.random.default_rng(seed)
    w = np.array([1.5, -1.0, 0.8])

    def draw(n: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        f = rng.normal(0.0, 1.0, (n, 3))
        return f, (rng.random(n) < 1 / (1 + np.exp(-(f @ w - 0.5)))).astype(float)

    f_train, y_train = draw(5000)
    model = LogisticRegression().fit(pd.DataFrame(f_train, columns=COLS), y_train)
    f_unit, y_unit = draw(n_units)
    variant = np.where(rng.random(n_units) < 0.5, "champion", "challenger")
    reps = rng.integers(1, 4, n_units)
    unit = np.repeat(np.arange(n_units), reps)
    first = np.r_[True, unit[1:] != unit[:-1]]
    feats = np.where(first[:, None], f_unit[unit], rng.normal(0.0, 1.0, (unit.size, 3)))
    preds = pd.DataFrame({
        "ts": np.arange(unit.size, dtype=float), "request_id": [f"r{i}" for i in range(unit.size)],
        "unit_id": [f"u{u}" for u in unit], "variant": variant[unit], "prediction": 0.5,
        "latency_ms": 10.0, "status": "ok", "served": True,
        "features": [dict(zip(COLS, map(float, r), strict=True)) for r in feats]})
    fb = pd.DataFrame({"ts": preds["ts"] + 1, "request_id": preds["request_id"],
                       "unit_id": preds["unit_id"], "outcome": y_unit[unit],
                       "reward": y_unit[unit]})
    return preds, fb, model


def _scorer(model: Any, calls: list[int] | None = None) -> Callable[..., npt.NDArray]:
    def score(rows: Sequence[Mapping[str, Any]]) -> npt.NDArray[np.float64]:
        if calls is not None:
            calls.append(len(rows))
        return np.asarray(model.predict_proba(pd.DataFrame(list(rows))[COLS])[:, 1], dtype=float)
    return score


def test_cupac_scores_each_unit_once_on_its_first_request() -> None:
    preds, _, model = _world(1, 500)
    calls: list[int] = []
    cov = cupac_covariates(preds, _scorer(model, calls), "outcome")
    first = preds.drop_duplicates("unit_id")
    assert calls == [first["unit_id"].nunique()]
    expected = model.predict_proba(pd.DataFrame(list(first["features"]))[COLS])[:, 1]
    got = cov.set_index("unit_id").loc[first["unit_id"], "x"].to_numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-15)
    # the reward metric (was the act/no-act decision right?) gets the expected reward max(p, 1-p)
    np.testing.assert_allclose(metric_prediction([0.2, 0.7], "reward"), [0.8, 0.7])


def test_cupac_reduces_variance_through_the_cuped_path(cfg_with: Callable[..., Config]) -> None:
    preds, fb, model = _world(2)
    cfg = cfg_with(metric_type="continuous", primary_metric="outcome", method="fixed",
                   cuped_covariate="cupac")
    d = analyze_frames(cfg, preds, fb, expected_weights=HALF, champion_scorer=_scorer(model))
    cmp = d.comparisons[0]
    assert cmp.effect.method == "welch+cupac" and cmp.cuped is not None
    # the same numbers as CUPED run by hand with x = the champion's score of the first request
    first = preds.drop_duplicates("unit_id").merge(fb[["request_id", "outcome"]], on="request_id")
    first = first.assign(x=model.predict_proba(pd.DataFrame(list(first["features"]))[COLS])[:, 1])
    arms = [RegressionSummary.from_values(g["outcome"], g["x"])
            for _, g in first.groupby(first["variant"] != "champion")]
    ref = cuped(arms[0], arms[1])
    assert cmp.cuped.theta == pytest.approx(ref.theta, rel=1e-10)
    assert cmp.cuped.variance_reduction == pytest.approx(ref.variance_reduction, rel=1e-9)
    assert cmp.cuped.variance_reduction > 0.2  # the champion predicts the label well
    plain = analyze_frames(cfg_with(metric_type="continuous", primary_metric="outcome",
                                    method="fixed", cuped=False), preds, fb, expected_weights=HALF)
    width = np.diff(cmp.effect.ci)[0]
    assert width < 0.9 * np.diff(plain.comparisons[0].effect.ci)[0]


def test_cuped_covariate_choice(cfg_with: Callable[..., Config]) -> None:
    preds, fb, model = _world(3, 800)
    units = preds["unit_id"].unique()
    pre = pd.DataFrame({"user_id": units, "pre_activity": np.arange(units.size, dtype=float)})
    scorer = _scorer(model)
    kw: dict[str, Any] = {"metric_type": "continuous", "primary_metric": "outcome",
                          "method": "fixed"}

    def label(covariate: str, **extra: Any) -> str:
        cfg = cfg_with(cuped_covariate=covariate, **kw)
        d = analyze_frames(cfg, preds, fb, expected_weights=HALF, **extra)
        return d.comparisons[0].effect.method

    assert label("auto", covariates=pre, champion_scorer=scorer) == "welch+cuped"
    assert label("auto", champion_scorer=scorer) == "welch+cupac"  # no pre-period metric
    assert label("auto") == "welch"  # neither
    assert label("cupac", covariates=pre, champion_scorer=scorer) == "welch+cupac"
    assert label("pre_period", champion_scorer=scorer) == "welch"


def test_scorer_of_the_wrong_shape_is_an_error() -> None:
    preds, _, _ = _world(4, 50)
    with pytest.raises(ValueError, match="champion scorer returned shape"):
        cupac_covariates(preds, lambda rows: np.zeros(3), "outcome")


def test_the_canary_loads_the_champion_only_when_cupac_is_wanted(
        cfg_with: Callable[..., Config]) -> None:
    from pipeline_components.experiment.canary import wants_cupac

    assert not wants_cupac(cfg_with(), has_pre_period=True)  # auto, pre-period exists
    assert wants_cupac(cfg_with(), has_pre_period=False)
    assert wants_cupac(cfg_with(cuped_covariate="cupac"), has_pre_period=True)
    assert not wants_cupac(cfg_with(cuped_covariate="pre_period"), has_pre_period=False)
    assert not wants_cupac(cfg_with(cuped=False, cuped_covariate="cupac"), has_pre_period=False)
