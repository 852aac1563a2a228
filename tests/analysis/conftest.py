"""Fixtures of the analysis tests: a config whose state lives in tmp_path, and a log builder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline_components.analysis.testing import CATEGORIES, NUMERIC
from pipeline_components.config import Config, config_from_mapping


def make_cfg(tmp_path: Path, **analysis: Any) -> Config:
    overrides = {f"analysis.{k}": v for k, v in analysis.items()}
    raw = {
        "experiment": {"id": "exp", "state_dir": str(tmp_path / ".abx")},
        "data": {"numeric_features": NUMERIC, "categorical_features": CATEGORIES,
                 "synthetic": {"n_numeric": len(NUMERIC)}},
        "features": {"out_dir": str(tmp_path / "features")},
    }
    return config_from_mapping(raw, overrides)


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    return make_cfg(tmp_path)


@pytest.fixture
def cfg_with(tmp_path: Path) -> Callable[..., Config]:
    """``cfg_with(method="gst", mde=0.2)``: a config with those ``analysis`` keys."""
    return lambda **analysis: make_cfg(tmp_path, **analysis)
