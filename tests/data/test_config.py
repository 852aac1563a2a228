"""The config loader: params.yaml, --set and dict overrides through one path, and its errors.

Every error must name the source (file or override), the key path and what was expected.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline_components.config import (
    Config,
    config_from_mapping,
    load_config,
    parse_overrides,
)
from pipeline_components.errors import ConfigError

from .conftest import PARAMS


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


# Mappings that are one value (a leaf), not a section of keys.
_LEAF_MAPPINGS = {"data.categorical_features", "serving.weights", "training.search_spaces"}


def _leaves(node: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and dotted not in _LEAF_MAPPINGS:
            out.update(_leaves(value, f"{dotted}."))
        else:
            out[dotted] = value
    return out


def test_params_yaml_is_the_one_source_of_defaults() -> None:
    # params.yaml names every knob, and config.py's built-in defaults (what a key left out of a
    # params file gets) are the same values: a knob added or changed in one place only fails.
    in_file = _leaves(yaml.safe_load(PARAMS.read_text()))
    built_in = _leaves(Config().model_dump(mode="json"))
    loaded = _leaves(load_config(PARAMS).model_dump(mode="json"))
    assert sorted(set(built_in) - set(in_file)) == []  # knobs params.yaml does not list
    assert sorted(set(in_file) - set(built_in)) == []  # keys config.py does not know
    assert {k: (v, loaded[k]) for k, v in built_in.items() if v != loaded[k]} == {}


def test_repo_params_load_and_match_the_defaults_shape() -> None:
    cfg = load_config(PARAMS)
    assert isinstance(cfg, Config)
    assert cfg.data.numeric_features and cfg.data.categorical_features
    assert len(cfg.data.numeric_features) == cfg.data.synthetic.n_numeric


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("training:\n  n_trails: 5\n", ["training.n_trails", "unknown key"]),
        ("bogus: 1\n", ["bogus", "unknown key"]),
        ("training:\n  n_trials: many\n", ["training.n_trials", "valid integer", "'many'"]),
        ("training:\n  n_trials: 0\n", ["training.n_trials", "greater than or equal to 1"]),
        ("data:\n  synthetic:\n    positive_rate: 1.5\n",
         ["data.synthetic.positive_rate", "less than 1", "1.5"]),
        ("data:\n  source: database\n", ["data.source", "'synthetic' or 'file'"]),
        ("data:\n  source: file\n", ["data.source is 'file' but data.path is not set"]),
        ("data:\n  numeric_features: [a, b]\n  synthetic:\n    n_numeric: 3\n",
         ["data: ", "n_numeric is 3 but data.numeric_features lists 2 names"]),
        ("serving:\n  weights: {champion: -1, challenger: 1}\n",
         ["serving.weights", "weights must be >= 0"]),
    ],
)
def test_file_errors_name_file_key_and_expectation(
    tmp_path: Path, yaml_text: str, expected: list[str]
) -> None:
    path = _write(tmp_path, yaml_text)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path}: ")
    for text in expected:
        assert text in msg, msg


def test_every_bad_key_is_reported_at_once(tmp_path: Path) -> None:
    path = _write(tmp_path, "training:\n  n_trials: 0\n  cv_folds: 1\n")
    msg = str(pytest.raises(ConfigError, load_config, path).value)
    assert "training.n_trials" in msg and "training.cv_folds" in msg


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, "config file not found"),
        ("training: [unclosed\n", "not valid YAML"),
        ("- just\n- a list\n", "top level must be a mapping"),
    ],
)
def test_unreadable_files(tmp_path: Path, text: str | None, expected: str) -> None:
    path = tmp_path / "params.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError, match=expected):
        load_config(path)


def test_set_overrides_parse_yaml_values() -> None:
    parsed = parse_overrides(
        ["training.n_trials=20", "data.covariate_column=null",
         "canary.steps=[0.1, 0.5]", "serving.weights={a: 0.5, b: 0.5}", "experiment.id=run-7"]
    )
    assert parsed == {"training.n_trials": 20, "data.covariate_column": None,
                      "canary.steps": [0.1, 0.5], "serving.weights": {"a": 0.5, "b": 0.5},
                      "experiment.id": "run-7"}
    cfg = load_config(PARAMS, parsed)
    assert cfg.training.n_trials == 20 and cfg.data.covariate_column is None
    assert cfg.canary.steps == [0.1, 0.5] and cfg.serving.weights == {"a": 0.5, "b": 0.5}
    # untouched keys keep the file's values
    assert cfg.data.numeric_features == load_config(PARAMS).data.numeric_features


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("training.n_trials", "expected KEY.PATH=VALUE"),
        ("=3", "expected KEY.PATH=VALUE"),
        ("serving.weights={a: 1", "not valid YAML"),
    ],
)
def test_malformed_set(item: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        parse_overrides([item])


def test_override_errors_say_they_came_from_an_override() -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(PARAMS, {"training.n_trials": "lots"})
    assert "(+ overrides)" in str(exc.value) and "training.n_trials" in str(exc.value)
    with pytest.raises(ConfigError, match="'training.n_trials' is not a mapping"):
        load_config(PARAMS, {"training.n_trials.deep": 1})
    with pytest.raises(ConfigError, match="training.n_trails: unknown key"):
        load_config(PARAMS, {"training.n_trails": 5})


def test_dict_override_is_the_same_path_as_set() -> None:
    # the Airflow run conf arrives as a dict of dotted keys: same result as --set
    raw = {"training": {"n_trials": 5, "cv_folds": 4}}
    via_dict = config_from_mapping(raw, {"training.n_trials": 9, "experiment.seed": 3})
    via_set = config_from_mapping(raw, parse_overrides(["training.n_trials=9",
                                                        "experiment.seed=3"]))
    assert via_dict == via_set
    assert via_dict.training.n_trials == 9 and via_dict.training.cv_folds == 4
    assert via_dict.params_hash() != config_from_mapping(raw).params_hash()
    with pytest.raises(ConfigError, match=r"<dict> \(\+ overrides\): experiment.seed"):
        config_from_mapping(raw, {"experiment.seed": -1})


def test_config_is_frozen() -> None:
    cfg = load_config(None)
    with pytest.raises(Exception, match="frozen"):
        cfg.training.n_trials = 3  # type: ignore[misc]


def test_cli_reports_config_errors_with_exit_code_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline_components.cli import main

    monkeypatch.setattr(sys, "argv", ["abx", "config", "-p", str(PARAMS),
                                      "--set", "training.n_trials=abc"])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == ConfigError.exit_code
    assert "training.n_trials" in capsys.readouterr().err
