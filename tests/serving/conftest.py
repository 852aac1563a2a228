"""Fixtures of the serving tests: the admin header, and the router's client key in the environment.
The registered models, ``make_cfg``, ``rows`` and ``pg_url`` come from tests/conftest.py."""

from __future__ import annotations

import os

import pytest

from pipeline_components.serving.testing import TEST_CLIENT_KEY, TEST_TOKEN

os.environ["ABX_CLIENT_KEY"] = TEST_CLIENT_KEY  # RouterClient sends it with /feedback


@pytest.fixture
def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TEST_TOKEN}"}
