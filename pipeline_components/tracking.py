"""MLflow connection: one place that points MLflow at the configured store and checks it answers.

``configure_mlflow`` is called before any stage touches MLflow. It checks reachability *first*
(a short HTTP health probe, a database connect, or a writable folder for SQLite/file stores), so an
unreachable tracking URI fails fast with a ``TrackingError`` naming the URI, before a study is
created or a single run is written: nothing is half-recorded. MLflow's own HTTP client would retry
for minutes instead.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlparse

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from pipeline_components.config import Config
from pipeline_components.errors import TrackingError

if TYPE_CHECKING:
    from mlflow import MlflowClient

T = TypeVar("T")

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def _check_sqlite(uri: str) -> None:
    path = Path(uri.removeprefix("sqlite:///"))
    if uri.startswith("sqlite:///:memory:"):
        return
    if not path.parent.is_dir():
        raise TrackingError(
            f"tracking URI {uri}: folder {path.parent} does not exist "
            "(set tracking.tracking_uri or experiment.state_dir)"
        )
    if not os.access(path.parent, os.W_OK):
        raise TrackingError(f"tracking URI {uri}: folder {path.parent} is not writable")


def _check_http(uri: str, timeout: float) -> None:
    import httpx

    try:
        resp = httpx.get(uri.rstrip("/") + "/health", timeout=timeout)
    except httpx.HTTPError as exc:
        raise TrackingError(f"tracking URI {uri} is unreachable: {exc}") from None
    if resp.status_code >= 500:
        raise TrackingError(f"tracking URI {uri} answered HTTP {resp.status_code} on /health")


def _check_database(uri: str, timeout: float) -> None:
    import sqlalchemy as sa

    args = {"connect_timeout": int(max(1, timeout))} if uri.startswith("postgresql") else {}
    try:
        engine = sa.create_engine(uri, connect_args=args)
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # any driver error means "cannot reach it"
        raise TrackingError(f"tracking URI {uri} is unreachable: {exc}") from None


def check_reachable(uri: str, timeout: float = 3.0) -> None:
    """Raise TrackingError (naming the URI) unless the tracking store can be used."""
    scheme = urlparse(uri).scheme
    if scheme == "sqlite":
        _check_sqlite(uri)
    elif scheme in ("http", "https"):
        _check_http(uri, timeout)
    elif scheme in ("postgresql", "mysql", "mssql") or "+" in scheme:
        _check_database(uri, timeout)
    elif scheme in ("", "file"):
        raise TrackingError(
            f"tracking URI {uri}: file stores have no model registry; use sqlite:///... or a server"
        )
    else:
        raise TrackingError(f"tracking URI {uri}: unsupported scheme {scheme!r}")


@contextlib.contextmanager
def _init_lock(uri: str) -> Iterator[None]:
    """Serialise first use of a SQLite store across processes.

    Family tasks of one DAG run start at the same moment; two processes running MLflow's schema
    migrations (or creating the experiment) on one fresh SQLite file at once can fail.
    """
    if not uri.startswith("sqlite:///") or uri.startswith("sqlite:///:memory:"):
        yield
        return
    import fcntl

    with open(uri.removeprefix("sqlite:///") + ".init.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def configure_mlflow(cfg: Config) -> MlflowClient:
    """Point MLflow at ``cfg.tracking_uri``, check it answers, select the experiment.

    mlflow is imported here, not at module level: it costs ~3 s and DAG files import us.

    Returns:
        An ``MlflowClient`` bound to the tracking (and registry) URI.

    Raises:
        TrackingError: the store is unreachable or refused to create the experiment.
    """
    uri = cfg.tracking_uri
    if not cfg.tracking.tracking_uri:
        cfg.state_dir.mkdir(parents=True, exist_ok=True)  # the default store lives there
    check_reachable(uri)
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        with _init_lock(uri):
            mlflow.set_experiment(cfg.tracking.experiment_name)
    except Exception as exc:
        raise TrackingError(
            f"tracking URI {uri}: cannot select experiment "
            f"{cfg.tracking.experiment_name!r}: {exc}"
        ) from None
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def experiment_id(client: MlflowClient, cfg: Config) -> str:
    """The id of ``tracking.experiment_name`` (``configure_mlflow`` has created it)."""
    exp = client.get_experiment_by_name(cfg.tracking.experiment_name)
    if exp is None:
        raise TrackingError(f"tracking URI {cfg.tracking_uri}: experiment "
                            f"{cfg.tracking.experiment_name!r} not found")
    return str(exp.experiment_id)


def _is_locked(exc: BaseException) -> bool:
    return "locked" in str(exc).lower()


def with_retries(fn: Callable[[], T], attempts: int = 8, delay: float = 0.25) -> T:
    """Call ``fn``, retrying while SQLite reports a lock (concurrent families log at once).

    Exponential backoff (``delay``, 2x, 4x, ...) through tenacity; any other error, or the lock
    still held after ``attempts`` calls, is raised as it came.
    """
    retrying = Retrying(stop=stop_after_attempt(attempts), wait=wait_exponential(multiplier=delay),
                        retry=retry_if_exception(_is_locked), reraise=True)
    return retrying(fn)
