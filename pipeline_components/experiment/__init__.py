"""The experiment stage: canary ramp, traffic simulator, promotion, cleanup and report.

``tasks`` holds one entry point per DAG task; the DAG (dags/ab_experiment.py), ``abx run`` and the
dvc stages call those. Submodules import their heavy dependencies lazily: the DAG processor
imports this package while parsing.
"""

from __future__ import annotations

from pipeline_components.experiment.config import (
    conf_from_form,
    config_for,
    experiment_id_from_run,
    form_overrides,
    make_conf,
)

__all__ = ["conf_from_form", "config_for", "experiment_id_from_run", "form_overrides", "make_conf"]
