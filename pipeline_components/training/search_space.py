"""Search spaces: params.yaml mappings turned into Optuna distributions, validated up front.

A search space is written in params.yaml as ``{param: {type, low, high, log, step, choices}}`` under
``training.search_spaces.<family>``. Every entry is checked before any worker starts, so a typo or
an impossible range fails in a second with the exact key path (``params.yaml:
training.search_spaces.hist_gbdt.max_depth: ...``) instead of minutes later inside a trial.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from pipeline_components.errors import ConfigError

SearchSpace = dict[str, BaseDistribution]

_ALLOWED_KEYS = {
    "float": {"type", "low", "high", "log", "step"},
    "int": {"type", "low", "high", "log", "step"},
    "categorical": {"type", "choices"},
}


def _where(family: str, param: str | None = None) -> str:
    key = f"training.search_spaces.{family}" + (f".{param}" if param else "")
    return f"params.yaml: {key}"


def _number(value: Any, where: str, name: str, kind: type) -> float | int:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        ok = ok and float(value).is_integer()
    if not ok:
        raise ConfigError(f"{where}.{name}: expected a {kind.__name__}, got {value!r}")
    return kind(value)


def parse_param(family: str, param: str, spec: Any) -> BaseDistribution:
    """Turn one ``{type: ..., ...}`` mapping into an Optuna distribution.

    Raises:
        ConfigError: naming ``training.search_spaces.<family>.<param>`` and what was expected.
    """
    where = _where(family, param)
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where}: expected a mapping with 'type', got {spec!r}")
    kind = spec.get("type")
    if kind not in _ALLOWED_KEYS:
        raise ConfigError(f"{where}.type: expected float | int | categorical, got {kind!r}")
    unknown = sorted(set(spec) - _ALLOWED_KEYS[kind])
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown} for type {kind}")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}.choices: expected a non-empty list, got {choices!r}")
        return CategoricalDistribution(choices)
    num_type: type = float if kind == "float" else int
    for name in ("low", "high"):
        if name not in spec:
            raise ConfigError(f"{where}: missing '{name}' for type {kind}")
    low = _number(spec["low"], where, "low", num_type)
    high = _number(spec["high"], where, "high", num_type)
    log = bool(spec.get("log", False))
    step = spec.get("step")
    if step is not None:
        step = _number(step, where, "step", num_type)
    if low > high:
        raise ConfigError(f"{where}: low ({low}) must be <= high ({high})")
    if log and low <= 0:
        raise ConfigError(f"{where}: log scale needs low > 0, got low={low}")
    if log and step not in (None, 1):
        raise ConfigError(f"{where}: 'step' cannot be combined with log: true")
    if kind == "float":
        return FloatDistribution(low, high, log=log, step=step)
    return IntDistribution(int(low), int(high), log=log, step=int(step or 1))


def parse_space(family: str, raw: Any, valid_params: set[str] | None = None) -> SearchSpace:
    """Validate a whole family's search space.

    Args:
        family: the family name (for messages).
        raw: the mapping from params.yaml.
        valid_params: the estimator's parameter names; unknown names are rejected so a typo does
            not silently search nothing.
    """
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(f"{_where(family)}: expected a non-empty mapping of params, got {raw!r}")
    space: SearchSpace = {}
    for param, spec in raw.items():
        if valid_params is not None and param not in valid_params:
            known = ", ".join(sorted(valid_params))
            raise ConfigError(
                f"{_where(family, param)}: not a parameter of this family's estimator "
                f"(known: {known})"
            )
        space[param] = parse_param(family, str(param), spec)
    return space


def suggest(trial: optuna.Trial, space: SearchSpace) -> dict[str, Any]:
    """Ask the trial for one value per parameter, through the public ``suggest_*`` API."""
    out: dict[str, Any] = {}
    for name, dist in space.items():
        if isinstance(dist, FloatDistribution):
            out[name] = trial.suggest_float(name, dist.low, dist.high, log=dist.log, step=dist.step)
        elif isinstance(dist, IntDistribution):
            out[name] = trial.suggest_int(name, dist.low, dist.high, log=dist.log, step=dist.step)
        elif isinstance(dist, CategoricalDistribution):
            out[name] = trial.suggest_categorical(name, dist.choices)
        else:  # pragma: no cover - parse_param only builds the three kinds above
            raise TypeError(f"unsupported distribution {dist!r}")
    return out
