"""with_retries: retries only a locked SQLite store, with backoff, then gives the error back."""

from __future__ import annotations

import pytest

from pipeline_components.tracking import with_retries


class Flaky:
    def __init__(self, failures: int, message: str) -> None:
        self.calls, self.failures, self.message = 0, failures, message

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError(self.message)
        return "ok"


def test_a_locked_store_is_retried_until_it_answers() -> None:
    fn = Flaky(2, "(sqlite3.OperationalError) database is locked")
    assert with_retries(fn, attempts=5, delay=0.001) == "ok" and fn.calls == 3


def test_other_errors_are_not_retried() -> None:
    fn = Flaky(1, "no such table: runs")
    with pytest.raises(RuntimeError, match="no such table"):
        with_retries(fn, attempts=5, delay=0.001)
    assert fn.calls == 1


def test_a_lock_that_stays_is_raised_after_the_last_attempt() -> None:
    fn = Flaky(10, "database is locked")
    with pytest.raises(RuntimeError, match="locked"):
        with_retries(fn, attempts=3, delay=0.001)
    assert fn.calls == 3
