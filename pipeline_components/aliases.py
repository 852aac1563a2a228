"""Registry aliases: their names, read strictly and moved only by compare-and-set under a lock.

``champion`` is the model serving users (the control arm of every comparison, the router's
default variant); ``challenger`` is the candidate under test. They are MLflow registry aliases
(``models:/NAME@champion``), router variant names and the control/treatment labels in the
prediction log, so one spelling must serve all of them (``CHAMPION``, ``CHALLENGER``).

The rules every alias move in abx follows (registration, bootstrap, promotion, rollback):

1. **Strict reads.** ``model_aliases`` returns None only when the registry answers
   ``RESOURCE_DOES_NOT_EXIST`` for the registered model. An outage (connection refused, timeout,
   HTTP 5xx) is never read as "no alias": after bounded retries it raises
   ``RegistryUnavailableError`` (retryable), so nothing is bootstrapped or promoted on an error.
2. **Bounded retries.** ``call`` retries transient failures with exponential backoff (tenacity),
   ``registry.retry_attempts`` times; MLflow's own HTTP retries (minutes by default) are switched
   off for the duration, and each request times out after ``registry.request_timeout_s``.
3. **Compare-and-set under a lock.** ``move_alias`` needs a ``HeldLock`` (from ``alias_lock``,
   a database lock, see ``pipeline_components.locks``) and moves an alias from the version the
   caller expects to the new one; anything else raises ``AliasConflictError``. Callers write
   tags (lineage, decision) first and move the alias last, so a crash in between leaves tags
   without an alias, never an alias without its lineage; re-running finishes the move.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, TypeVar

from pipeline_components.config import Config
from pipeline_components.errors import AliasConflictError, RegistryError, RegistryUnavailableError
from pipeline_components.locks import HeldLock, db_lock

if TYPE_CHECKING:
    from mlflow import MlflowClient

T = TypeVar("T")
CHAMPION = "champion"
CHALLENGER = "challenger"
# MLflow error codes that mean "the registry did not really answer": worth another attempt.
TRANSIENT_CODES = frozenset({
    "INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "DEADLINE_EXCEEDED", "REQUEST_LIMIT_EXCEEDED",
    "RESOURCE_EXHAUSTED", "ABORTED", "CANCELLED",
})
_HTTP_ENV = ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")


def is_transient(exc: BaseException) -> bool:
    """True for failures a later attempt may not see: refused, timed out, 5xx, a busy SQLite."""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        return exc.error_code in TRANSIENT_CODES
    import requests
    import sqlalchemy.exc

    return isinstance(exc, OSError | requests.RequestException | sqlalchemy.exc.OperationalError)


@contextlib.contextmanager
def bounded_http(cfg: Config) -> Iterator[None]:
    """No MLflow-internal HTTP retries and a short request timeout (unless the user set them)."""
    wanted = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
              "MLFLOW_HTTP_REQUEST_TIMEOUT": str(cfg.registry.request_timeout_s)}
    saved = {k: os.environ.get(k) for k in _HTTP_ENV}
    for key, value in wanted.items():
        os.environ.setdefault(key, value)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)


def call(cfg: Config, what: str, fn: Callable[[], T]) -> T:
    """Run one registry operation with bounded retries on transient failures.

    Args:
        cfg: ``registry.retry_attempts`` / ``retry_wait_s`` / ``request_timeout_s`` apply.
        what: the operation, for the error message ("setting alias champion of abx-model").
        fn: the call; it must be safe to repeat (reads, tag and alias writes are).

    Raises:
        RegistryUnavailableError: still failing transiently after the last attempt (retryable).
        RegistryError: the registry answered with an error (not found, bad request...).
    """
    import tenacity
    from mlflow.exceptions import MlflowException

    reg = cfg.registry
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(reg.retry_attempts),
        wait=tenacity.wait_exponential(multiplier=reg.retry_wait_s, max=8 * reg.retry_wait_s),
        retry=tenacity.retry_if_exception(is_transient), reraise=True)
    t0 = time.monotonic()
    try:
        with bounded_http(cfg):
            return retrying(fn)
    except Exception as exc:
        if is_transient(exc):
            raise RegistryUnavailableError(
                f"registry {cfg.tracking_uri} unavailable while {what} "
                f"({reg.retry_attempts} attempts in {time.monotonic() - t0:.1f} s; "
                f"registry.retry_attempts): {_brief(exc)}. Retryable: no alias was moved by "
                "this call; run the step again once the registry answers") from exc
        if isinstance(exc, MlflowException):
            raise RegistryError(f"registry {cfg.tracking_uri}: {what} failed: "
                                f"{exc.error_code}: {_brief(exc)}") from exc
        raise


def _brief(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc)
    return " ".join(str(text).split())[:300]


def model_aliases(cfg: Config, client: MlflowClient) -> dict[str, str] | None:
    """``{alias: version}`` of ``registry.model_name``; None only if the model does not exist.

    "Does not exist" must be the registry's own ``RESOURCE_DOES_NOT_EXIST`` answer; every other
    failure raises (see ``call``), so an outage never looks like "no champion".
    """
    from mlflow.exceptions import MlflowException

    name = cfg.registry.model_name

    def read() -> dict[str, str] | None:
        try:
            model = client.get_registered_model(name)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        return {str(a): str(v) for a, v in (model.aliases or {}).items()}

    return call(cfg, f"reading the aliases of registered model {name!r}", read)


def alias_version(cfg: Config, client: MlflowClient, alias: str) -> str | None:
    """The version ``alias`` points to; None if the alias (or the model) does not exist."""
    return (model_aliases(cfg, client) or {}).get(alias)


@contextlib.contextmanager
def alias_lock(cfg: Config, timeout_s: float | None = None) -> Iterator[HeldLock]:
    """The registered model's alias lock, held in the database at ``cfg.lock_url``.

    Raises:
        ExperimentLockedError: another promotion/rollback held it longer than
            ``canary.lock_timeout_s`` (or ``timeout_s``).
    """
    timeout = cfg.canary.lock_timeout_s if timeout_s is None else timeout_s
    with db_lock(cfg.lock_url, f"alias:{cfg.registry.model_name}", timeout,
                 owner=f"experiment {cfg.experiment.id}") as held:
        yield held


def move_alias(cfg: Config, client: MlflowClient, held: HeldLock, alias: str, *,
               expected: str | None, new: str | None) -> bool:
    """Compare-and-set: move ``alias`` from ``expected`` to ``new`` (None: no alias).

    Returns:
        True if the alias moved, False if it already pointed at ``new`` (a re-run).

    Raises:
        AliasConflictError: the alias points elsewhere (someone else moved it).
        RegistryUnavailableError: the registry did not answer; the alias did not move.
    """
    name = cfg.registry.model_name
    if held.name != f"alias:{name}":
        raise RegistryError(f"move_alias {name}@{alias}: the lock held is {held.name!r}")
    current = alias_version(cfg, client, alias)
    if current == new:
        return False
    if current != expected:
        raise AliasConflictError(
            f"registry: {name}@{alias} is at {_v(current)}, not at {_v(expected)} as experiment "
            f"{cfg.experiment.id} expected; refusing to move it to {_v(new)} "
            "(another experiment moved it: start a new experiment)")
    if new is None:
        call(cfg, f"removing alias {alias} of {name!r}",
             lambda: client.delete_registered_model_alias(name, alias))
    else:
        call(cfg, f"setting alias {alias} of {name!r} to v{new}",
             lambda: client.set_registered_model_alias(name, alias, new))
    return True


def _v(version: str | None) -> str:
    return f"v{version}" if version is not None else "no version"
