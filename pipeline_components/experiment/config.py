"""Run-conf glue: Airflow params / CLI options -> the dotted overrides -> a validated Config.

Every driver (the DAG, ``abx run``, ``dvc repro``) describes a run as a small JSON-able *conf*::

    {"params_path": "/repo/params.yaml", "experiment_id": "exp-...", "overrides": {"k.path": v},
     "root": "/repo"}

and every task rebuilds its ``Config`` from it with :func:`config_for`. The conf is what travels
through XCom, so a retry on another worker rebuilds exactly the same config. Relative paths in
params.yaml are anchored at the conf's project ``root`` (the CLI's working directory or
``--root``, the same root every other ``abx`` subcommand uses; the DAG's is the params file's
folder, the repo), never at a worker's cwd.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline_components.config import PATH_KEYS, Config, load_config
from pipeline_components.errors import ConfigError

# Airflow form field -> dotted params.yaml key. None in the form means "keep params.yaml".
FORM_KEYS: dict[str, str] = {
    "families": "training.families",
    "n_trials": "training.n_trials",
    "canary_steps": "canary.steps",
    "alpha": "analysis.alpha",
    "mde": "analysis.mde",
    "min_samples": "canary.min_samples_per_step",
    "max_duration_s": "canary.max_duration_s",
    "rate_per_s": "simulator.rate_per_s",
}

__all__ = ["FORM_KEYS", "PATH_KEYS", "conf_from_form", "config_for", "make_conf"]

_ID_BAD = re.compile(r"[^A-Za-z0-9_]+")


def experiment_id_from_run(run_id: str, prefix: str = "exp") -> str:
    """A valid, readable experiment id from an Airflow run id (one experiment per DAG run).

    ``manual__2026-11-23T16:16:32.564534+00:00`` -> ``exp-manual-20261123T161632564534``.
    """
    kind, sep, rest = run_id.partition("__")
    if not sep:
        kind, rest = "run", run_id
    stamp = _ID_BAD.sub("", rest.split("+")[0].replace("-", "").replace(":", "").replace(".", ""))
    return f"{prefix}-{_ID_BAD.sub('-', kind)}-{stamp or 'x'}"[:120]


def form_overrides(form: Mapping[str, Any]) -> dict[str, Any]:
    """Translate the DAG's params form into dotted overrides (None values are skipped).

    The free-form ``overrides`` field (a mapping of dotted keys) is merged last, so a test or an
    expert can reach any knob from the trigger form.
    """
    out: dict[str, Any] = {}
    for field, key in FORM_KEYS.items():
        value = form.get(field)
        if value is not None and value != "" and value != []:
            out[key] = value
    extra = form.get("overrides") or {}
    if not isinstance(extra, Mapping):
        raise ConfigError(f"run conf: 'overrides' must map KEY.PATH to a value, got {extra!r}")
    out.update({str(k): v for k, v in extra.items()})
    return out


def _overridden(key: str, overrides: Mapping[str, Any]) -> bool:
    """Whether an override set ``key`` (itself, a section above it or a key below it)."""
    return any(k == key or key.startswith(f"{k}.") or k.startswith(f"{key}.") for k in overrides)


def check_training(cfg: Config, overrides: Mapping[str, Any], params_path: str,
                   origin: str) -> None:
    """Families and search spaces checked before any stage runs, blaming the right source.

    A typo in a model family must not pass the first task and fail in ``train`` after data,
    validation and features ran; and the message names where the bad value came from: the
    params file, or ``origin`` (the trigger form / run conf, ``--set``).
    """
    from pipeline_components.training.families import validate_training_config

    try:
        validate_training_config(cfg)
    except ConfigError as exc:
        _, _, rest = str(exc).partition(": ")  # "params.yaml: training.families: ..."
        key = rest.partition(":")[0]
        source = origin if _overridden(key, overrides) else params_path
        raise ConfigError(f"{source}: {rest}") from None


def make_conf(
    params_path: str | Path,
    experiment_id: str,
    overrides: Mapping[str, Any] | None = None,
    root: str | Path | None = None,
    origin: str = "override",
) -> dict[str, Any]:
    """Build and validate a run conf (raises ConfigError naming the source and the key).

    ``root`` anchors relative paths; None: the params file's folder (the DAG's repo).
    ``origin`` names where ``overrides`` came from in error messages (e.g. the trigger form).
    """
    params = Path(params_path).resolve()
    extra = dict(overrides or {})
    conf = {
        "params_path": str(params),
        "experiment_id": experiment_id,
        "overrides": extra,
        "root": str(Path(root).resolve() if root is not None else params.parent),
    }
    cfg = config_for(conf)  # fail fast, in the first task, with the offending key
    check_training(cfg, extra, str(params), origin)
    return conf


def config_for(conf: Mapping[str, Any]) -> Config:
    """The Config of one run: params file + overrides + experiment id, paths anchored at root."""
    path = Path(conf["params_path"])
    overrides = dict(conf.get("overrides") or {})
    overrides["experiment.id"] = conf["experiment_id"]
    return load_config(path, overrides, root=conf.get("root") or path.parent)


def conf_from_form(
    params_path: str | Path, form: Mapping[str, Any], run_id: str
) -> dict[str, Any]:
    """The DAG's first task: trigger form + run id -> a validated run conf.

    The experiment id is the form's ``experiment_id`` when given, else derived from the run id, so
    every DAG run is a fresh experiment and a retry of any task finds the same one.
    """
    exp_id = form.get("experiment_id") or experiment_id_from_run(run_id)
    return make_conf(params_path, str(exp_id), form_overrides(form),
                     origin="trigger form / run conf")
