"""Search spaces and families: params.yaml specs become distributions; bad ones name the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from pipeline_components.config import load_config
from pipeline_components.errors import ConfigError
from pipeline_components.training import DEFAULT_SEARCH_SPACES, search_space
from pipeline_components.training.families import validate_training_config
from pipeline_components.training.search_space import parse_param, parse_space

REPO = Path(__file__).resolve().parents[2]


def test_specs_become_distributions() -> None:
    assert parse_param("f", "a", {"type": "float", "low": 0.1, "high": 1, "log": True}) == (
        FloatDistribution(0.1, 1.0, log=True)
    )
    assert parse_param("f", "b", {"type": "int", "low": 50, "high": 200, "step": 50}) == (
        IntDistribution(50, 200, step=50)
    )
    assert parse_param("f", "c", {"type": "categorical", "choices": [None, "x"]}) == (
        CategoricalDistribution([None, "x"])
    )


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"type": "int", "low": 5, "high": 2}, "low (5) must be <= high (2)"),
        ({"type": "integer", "low": 1, "high": 2}, "max_depth.type: expected float | int"),
        ({"type": "int", "low": 1.5, "high": 4}, "max_depth.low: expected a int"),
        ({"type": "int", "high": 4}, "missing 'low'"),
        ({"type": "float", "low": 0.0, "high": 1.0, "log": True}, "log scale needs low > 0"),
        ({"type": "categorical", "choices": []}, "max_depth.choices: expected a non-empty list"),
        ({"type": "int", "low": 1, "high": 4, "choices": [1]}, "unknown key(s) ['choices']"),
        (7, "expected a mapping with 'type'"),
    ],
)
def test_bad_spec_names_the_key(spec: Any, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_param("hist_gbdt", "max_depth", spec)
    assert "params.yaml: training.search_spaces.hist_gbdt.max_depth" in str(err.value)
    assert fragment in str(err.value)


def test_unknown_estimator_param_is_rejected() -> None:
    cfg = load_config(None, {"training.search_spaces": {"hist_gbdt": {
        "max_deph": {"type": "int", "low": 2, "high": 8}}}})
    with pytest.raises(ConfigError, match=r"training\.search_spaces\.hist_gbdt\.max_deph: not a"):
        search_space(cfg, "hist_gbdt")


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"training.families": ["logreg", "xgboost"]}, "training.families: unknown family 'xgb"),
        ({"training.families": []}, "training.families: at least one family"),
        ({"training.search_spaces": {"svm": {"C": {"type": "float", "low": 1, "high": 2}}}},
         "training.search_spaces.svm: unknown family"),
    ],
)
def test_bad_training_config_names_the_key(overrides: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.")):
        validate_training_config(load_config(None, overrides))


def test_params_yaml_ships_the_default_spaces() -> None:
    # The documented defaults and the built-in fallback must not drift apart.
    cfg = load_config(REPO / "params.yaml")
    validate_training_config(cfg)
    assert cfg.training.search_spaces == DEFAULT_SEARCH_SPACES


def test_family_without_entry_uses_the_builtin_default() -> None:
    cfg = load_config(None)
    space = search_space(cfg, "random_forest")
    assert space == parse_space("random_forest", DEFAULT_SEARCH_SPACES["random_forest"])
