"""The train stage: one Optuna study per model family, trials in parallel worker processes,
every trial an MLflow run, the best trial refit and logged with its holdout metrics.

Public entry points: ``train_family(cfg, family)`` and ``train_all(cfg)``.
"""

from __future__ import annotations

from pipeline_components.training.families import (
    DEFAULT_SEARCH_SPACES,
    FACTORIES,
    build_pipeline,
    search_space,
    validate_training_config,
)
from pipeline_components.training.runner import result_path, train_all, train_family
from pipeline_components.training.search_space import parse_space

__all__ = [
    "DEFAULT_SEARCH_SPACES",
    "FACTORIES",
    "build_pipeline",
    "parse_space",
    "result_path",
    "search_space",
    "train_all",
    "train_family",
    "validate_training_config",
]
