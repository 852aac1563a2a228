"""Promote or roll back a challenger: registry aliases + tags, then the router's traffic.

Safety rules, in order:

1. **A lock per registered model.** Alias changes happen under an exclusive ``fcntl`` lock on
   ``<state_dir>/locks/<model>.lock``; a second experiment on the same model waits up to
   ``canary.lock_timeout_s`` and then fails with ``ExperimentLockedError``. (One machine; for
   several machines the check-and-set below still refuses to corrupt the aliases.)
2. **Check-and-set.** The experiment records the champion version it was compared against. If the
   ``champion`` alias moved since (another experiment promoted meanwhile), promotion refuses with
   ``ExperimentLockedError`` instead of overwriting a decision it never saw.
3. **Idempotent.** Re-running promote after it succeeded (an Airflow retry) finds the champion
   already at the challenger's version and changes nothing; rollback likewise.

The champion alias is never touched by a rollback.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pipeline_components.aliases import CHALLENGER, CHAMPION
from pipeline_components.config import Config
from pipeline_components.errors import ExperimentLockedError, RegistryError
from pipeline_components.locks import is_postgres, pg_advisory_lock


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def lock_path(cfg: Config) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in cfg.registry.model_name)
    return cfg.state_dir / "locks" / f"{safe}.lock"


@contextlib.contextmanager
def model_lock(cfg: Config, timeout_s: float | None = None) -> Iterator[Path]:
    """Hold the registered model's alias lock (exclusive, across processes on this machine; across
    machines when the prediction store is PostgreSQL: an advisory lock there, see locks.py).

    Raises:
        ExperimentLockedError: another experiment held it for longer than ``timeout_s``.
    """
    timeout = cfg.canary.lock_timeout_s if timeout_s is None else timeout_s
    path = lock_path(cfg)
    if is_postgres(cfg.serving.store_url):
        with pg_advisory_lock(cfg.store_url, f"abx-model:{cfg.registry.model_name}", timeout,
                              f"experiment {cfg.experiment.id}"):
            yield path
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    holder = path.read_text().strip() or "another run"
                    raise ExperimentLockedError(
                        f"{path}: registered model {cfg.registry.model_name!r} is locked by "
                        f"{holder} (waited {timeout:.0f} s; canary.lock_timeout_s)"
                    ) from None
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.write(fd, f"experiment {cfg.experiment.id} pid {os.getpid()}".encode())
        yield path
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _alias(client: Any, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except Exception as exc:  # MlflowException RESOURCE_DOES_NOT_EXIST: no such alias
        if "not found" in str(exc).lower() or "does not exist" in str(exc).lower():
            return None
        raise RegistryError(f"registry: cannot read alias {name}@{alias}: {exc}") from exc


def _reasons_text(reasons: Sequence[Any]) -> str:
    from pipeline_components.analysis.decision import reason_dicts

    parts = [f"{r['code']}: {r['message']}" for r in reason_dicts(reasons)]
    return "; ".join(parts)[:4900]  # MLflow tag values are capped at 5000 chars


def _router(url: str | None, token: str | None) -> Any:
    if not url:
        return None
    from pipeline_components.deploy.client import RouterClient

    return RouterClient(url, token)


def promote(
    cfg: Config,
    version: str,
    *,
    expected_champion: str | None,
    reasons: Sequence[Any] = (),
    router_url: str | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """Move ``champion`` to ``version`` (check-and-set against ``expected_champion``).

    Returns:
        ``{"action": "promote", "changed", "champion_before", "champion_after", "version"}``.
    """
    from pipeline_components.tracking import configure_mlflow

    name = cfg.registry.model_name
    with model_lock(cfg):
        client = configure_mlflow(cfg)
        current = _alias(client, name, CHAMPION)
        changed = current != version
        if changed and current != expected_champion:
            raise ExperimentLockedError(
                f"registry: {name}@champion moved from v{expected_champion} to v{current} during "
                f"experiment {cfg.experiment.id}; refusing to promote v{version} over a champion "
                "it was not compared with (start a new experiment)"
            )
        if changed:
            why = _reasons_text(reasons) or "canary decision: promote"
            if current is not None:
                client.set_model_version_tag(name, current, "abx.retired_at", _now_iso())
                client.set_model_version_tag(
                    name, current, "abx.retired_reason",
                    f"replaced by v{version} in experiment {cfg.experiment.id}: {why}"[:4990],
                )
            client.set_registered_model_alias(name, CHAMPION, version)
            client.set_model_version_tag(name, version, "abx.promoted_at", _now_iso())
            client.set_model_version_tag(name, version, "abx.promoted_by", cfg.experiment.id)
            client.set_model_version_tag(name, version, "abx.promotion_reasons", why)
        if _alias(client, name, CHALLENGER) == version:
            client.delete_registered_model_alias(name, CHALLENGER)
    router = _router(router_url, token)
    if router is not None:
        router.promote()  # the challenger slot *is* the new champion: serve it at 100%
        router.close()
    return {"action": "promote", "changed": changed, "version": version,
            "champion_before": current, "champion_after": version}


def rollback(
    cfg: Config,
    version: str | None,
    *,
    reasons: Sequence[Any] = (),
    router_url: str | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """Reject ``version``: remove its ``challenger`` alias, tag it, route all traffic to champion.

    Returns:
        ``{"action": "rollback", "changed", "version", "champion"}`` (champion is untouched).
    """
    from pipeline_components.tracking import configure_mlflow

    name = cfg.registry.model_name
    why = _reasons_text(reasons) or "canary decision: rollback"
    changed = False
    with model_lock(cfg):
        client = configure_mlflow(cfg)
        champion = _alias(client, name, CHAMPION)
        if version is not None and version != champion:
            if _alias(client, name, CHALLENGER) == version:
                client.delete_registered_model_alias(name, CHALLENGER)
                changed = True
            tags = client.get_model_version(name, version).tags or {}
            if tags.get("abx.rejected") != "true":
                client.set_model_version_tag(name, version, "abx.rejected", "true")
                client.set_model_version_tag(name, version, "abx.rejected_at", _now_iso())
                client.set_model_version_tag(name, version, "abx.rejected_by", cfg.experiment.id)
                client.set_model_version_tag(name, version, "abx.rejected_reasons", why)
                changed = True
    router = _router(router_url, token)
    if router is not None:
        router.rollback(why[:500])
        router.close()
    return {"action": "rollback", "changed": changed, "version": version, "champion": champion}
