"""The endpoint's two secrets: the admin token and the client key for /feedback.

They are separate on purpose: a client that may report outcomes must not be able to move traffic.
Each comes from the config (``serving.admin_token`` / ``endpoint.client_key``), else the
environment (``ABX_ADMIN_TOKEN`` / ``ABX_CLIENT_KEY``), else a file under
``<state_dir>/endpoints/<name>/`` (mode 0600) that ``abx endpoint up`` creates, so the endpoint
processes, the canary and the simulator on this machine agree without a secret in params.yaml.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from pipeline_components.config import Config

ENV = {"admin_token": "ABX_ADMIN_TOKEN", "client_key": "ABX_CLIENT_KEY"}


def endpoint_dir(cfg: Config) -> Path:
    return (cfg.state_dir / "endpoints" / cfg.endpoint.name).resolve()


def _configured(cfg: Config, kind: str) -> str | None:
    secret = cfg.serving.admin_token if kind == "admin_token" else cfg.endpoint.client_key
    value = secret.get_secret_value() if secret is not None else None
    return value or os.environ.get(ENV[kind]) or None


def endpoint_secret(cfg: Config, kind: str, *, create: bool = False) -> str | None:
    """``kind`` ("admin_token" | "client_key") of the endpoint; with ``create``, make one."""
    value = _configured(cfg, kind)
    if value:
        return value
    path = endpoint_dir(cfg) / kind
    if path.is_file():
        return path.read_text().strip() or None
    if not create:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return value


def secret_env(cfg: Config) -> dict[str, str]:
    """Environment for an endpoint process: both secrets (created if missing)."""
    out = {}
    for kind, env in ENV.items():
        value = endpoint_secret(cfg, kind, create=True)
        if value:
            out[env] = value
    return out


def matches(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison; False when either side is missing."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())
