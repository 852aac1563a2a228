"""Fixtures of the endpoint tests: ``make_cfg`` of tests/conftest.py with free ports, a fast
control loop and secrets known to the test. Models, ``rows`` and ``pg_url`` come from there too."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pipeline_components.config import Config
from pipeline_components.serving.testing import TEST_CLIENT_KEY

ENDPOINT_BASE = {"endpoint.port": 0, "endpoint.client_key": TEST_CLIENT_KEY,
                 "endpoint.load_timeout_s": 90, "endpoint.drain_s": 0.5,
                 "serving.guardrails.min_requests": 20}


@pytest.fixture
def make_cfg(make_cfg: Callable[..., Config]) -> Callable[..., Config]:
    """The shared ``make_cfg`` with ``ENDPOINT_BASE`` under the test's overrides."""
    return lambda overrides=None: make_cfg({**ENDPOINT_BASE, **(overrides or {})})
