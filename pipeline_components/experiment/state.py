"""Per-experiment state files: every task result is a small JSON under the experiment folder.

Files live in ``cfg.experiment_dir`` (``<state_dir>/experiments/<experiment id>``), so a retry,
another driver (``abx``, ``dvc repro``, Airflow) or the report can read what a step decided
without XCom. Writes are atomic (temp file + rename): a crash never leaves half a result.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline_components.config import Config
from pipeline_components.fileio import write_json


def state_path(cfg: Config, name: str) -> Path:
    """``<experiment_dir>/run/<name>.json`` (a subfolder: other stages write their own files)."""
    return cfg.experiment_dir / "run" / f"{name}.json"


def write_state(cfg: Config, name: str, payload: Mapping[str, Any]) -> Path:
    """Write ``<experiment_dir>/<name>.json`` atomically; returns its path."""
    return write_json(state_path(cfg, name), payload)


def read_state(cfg: Config, name: str) -> dict[str, Any] | None:
    """The stored result of a step, or None when the step has not finished yet."""
    path = state_path(cfg, name)
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def admin_token(cfg: Config, *, create: bool = False) -> str | None:
    """The router's admin token: serving.admin_token, env ABX_ADMIN_TOKEN, or this run's own.

    With ``create`` (the deploy step) and no token configured, a random one is made, stored with
    mode 0600 under the experiment folder (later tasks may run in other processes) and exported to
    the environment the router subprocess inherits.
    """
    configured = cfg.serving.admin_token
    token = (configured.get_secret_value() if configured else None) or os.environ.get(
        "ABX_ADMIN_TOKEN")
    path = cfg.experiment_dir / "run" / "admin_token"
    if token:
        return token
    if path.is_file():
        token = path.read_text().strip()
    elif create:
        path.parent.mkdir(parents=True, exist_ok=True)
        token = secrets.token_urlsafe(24)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(token)
    if token and create:
        os.environ["ABX_ADMIN_TOKEN"] = token
    return token
