"""One exception hierarchy for abx.

Every error a user can cause (bad config, bad data, bad request, an unreachable service) is an
``AbxError`` whose message names *where* the problem is (file, key, column, field) and what was
expected. The CLI maps each class to its own exit code and prints one readable line, so scripts and
Airflow can tell a data problem from a config problem without parsing text.
"""

from __future__ import annotations


class AbxError(Exception):
    """Base class of every error abx raises on purpose."""

    exit_code = 1


class ConfigError(AbxError):
    """params.yaml, a ``--set`` override or an Airflow run conf is invalid."""

    exit_code = 2


class DataError(AbxError):
    """An input data file is missing, unreadable or of the wrong format."""

    exit_code = 3


class DataValidationError(DataError):
    """The data was read but failed its Great Expectations suite."""

    exit_code = 4

    def __init__(self, message: str, report_path: str | None = None) -> None:
        super().__init__(message)
        self.report_path = report_path


class TrackingError(AbxError):
    """The MLflow tracking server / registry cannot be reached or refused an operation."""

    exit_code = 5


class RegistryUnavailableError(TrackingError):
    """The registry did not answer (refused, timed out, 5xx) after bounded retries.

    Retryable: nothing was moved by the failed call, and every registry step is idempotent, so
    running the step again once the registry answers finishes the job.
    """


class RegistryError(AbxError):
    """A registered model, version or alias is missing or in an unexpected state."""

    exit_code = 6


class PromotionRefusedError(RegistryError):
    """Promotion preconditions fail: no promote decision, a failed gate, or a rejected version."""

    exit_code = 11


class DeploymentError(AbxError):
    """A deployment backend could not start, reach or stop a router / model server."""

    exit_code = 7


class AnalysisError(AbxError):
    """The experiment data cannot be analysed (e.g. the store is unreachable)."""

    exit_code = 8


class ExperimentLockedError(AbxError):
    """Another run holds the lock on the registered model's aliases."""

    exit_code = 9


class AliasConflictError(ExperimentLockedError):
    """Compare-and-set failed: an alias is not at the version this experiment expected.

    Final (a retry cannot fix it): another experiment moved the alias; start a new experiment.
    """


class MissingExtraError(AbxError):
    """A command needs a package of an extra that is not installed (``abx[serve]``,
    ``abx[pipeline]``): the message names the module and the ``pip install`` that brings it."""

    exit_code = 12


class StoreSchemaError(AbxError):
    """A store's schema is not the one this abx needs (older: run ``abx db upgrade``; newer:
    written by a newer abx). Nothing was changed."""

    exit_code = 13
