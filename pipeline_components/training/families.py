"""Candidate model families: estimator factories and their default search spaces.

Every candidate is an sklearn ``Pipeline`` whose first step is the (unfitted) preprocessor from the
features stage, so a logged model takes *raw* feature rows and no caller can forget to transform.
Search spaces come from ``training.search_spaces.<family>`` in params.yaml; a family without an
entry there (a params file that lists only some) falls back to config's ``DEFAULT_SEARCH_SPACES``,
the values params.yaml ships with (tests/data/test_config.py keeps the two equal).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sklearn.base import BaseEstimator
from sklearn.ensemble import (
    ExtraTreesClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from pipeline_components.config import DEFAULT_SEARCH_SPACES, Config
from pipeline_components.errors import ConfigError
from pipeline_components.training.search_space import SearchSpace, parse_space


def _logreg(seed: int, params: dict[str, Any]) -> BaseEstimator:
    return LogisticRegression(max_iter=2000, random_state=seed, **params)


def _extra_trees(seed: int, params: dict[str, Any]) -> BaseEstimator:
    return ExtraTreesClassifier(random_state=seed, n_jobs=1, **params)


def _random_forest(seed: int, params: dict[str, Any]) -> BaseEstimator:
    return RandomForestClassifier(random_state=seed, n_jobs=1, **params)


def _hist_gbdt(seed: int, params: dict[str, Any]) -> BaseEstimator:
    return HistGradientBoostingClassifier(random_state=seed, early_stopping=False, **params)


FACTORIES: dict[str, Callable[[int, dict[str, Any]], BaseEstimator]] = {
    "logreg": _logreg,
    "extra_trees": _extra_trees,
    "random_forest": _random_forest,
    "hist_gbdt": _hist_gbdt,
}

def check_family(family: str) -> None:
    """Raise ConfigError naming ``training.families`` when ``family`` is not a known family."""
    if family not in FACTORIES:
        known = ", ".join(sorted(FACTORIES))
        raise ConfigError(
            f"params.yaml: training.families: unknown family {family!r} (known: {known})"
        )


def search_space(cfg: Config, family: str) -> SearchSpace:
    """The validated search space of ``family``: params.yaml's entry, or the built-in default."""
    check_family(family)
    raw = cfg.training.search_spaces.get(family, DEFAULT_SEARCH_SPACES[family])
    valid = set(FACTORIES[family](0, {}).get_params(deep=False))
    return parse_space(family, raw, valid)


def validate_training_config(cfg: Config) -> None:
    """Check every listed family and every search space before any work starts."""
    if not cfg.training.families:
        raise ConfigError("params.yaml: training.families: at least one family is needed")
    for family in cfg.training.families:
        search_space(cfg, family)
    for family in cfg.training.search_spaces:
        if family not in FACTORIES:
            known = ", ".join(sorted(FACTORIES))
            raise ConfigError(
                f"params.yaml: training.search_spaces.{family}: unknown family (known: {known})"
            )


def build_pipeline(cfg: Config, family: str, params: dict[str, Any]) -> Pipeline:
    """A fresh, unfitted ``preprocess -> model`` pipeline for one set of hyperparameters."""
    from pipeline_components import features  # the features stage owns the preprocessing

    check_family(family)
    model = FACTORIES[family](cfg.experiment.seed, dict(params))
    return Pipeline([("preprocess", features.build_preprocessor(cfg)), ("model", model)])
