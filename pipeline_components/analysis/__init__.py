"""Experiment analysis: SRM, fixed and sequential tests, CUPED, guardrails, drift, decision.

Statistics run on sufficient statistics (``summaries``); each test returns a frozen result
dataclass that names a reason when the data cannot be analysed. ``analyze`` (store in, Decision
out) is the stage's entry point; ``analyze_frames`` is its pure core.

Example:
    >>> from pipeline_components.analysis import SampleMean, welch_test
    >>> r = welch_test(SampleMean.from_values([1, 2, 3, 4]), SampleMean.from_values([2, 3, 4, 6]))
    >>> round(r.lift, 2)
    1.25
"""

from __future__ import annotations

from pipeline_components.analysis import codes
from pipeline_components.analysis.cuped import CupedResult, cuped
from pipeline_components.analysis.decision import (
    Comparison,
    Decision,
    Reason,
    VariantMetrics,
)
from pipeline_components.analysis.fixed import EffectResult, proportion_test, welch_test
from pipeline_components.analysis.gst import boundaries, gst_test, inflation_factor
from pipeline_components.analysis.planning import Plan, fixed_information, plan
from pipeline_components.analysis.run import analyze, analyze_frames
from pipeline_components.analysis.sequential import msprt_test, tau2_for_horizon
from pipeline_components.analysis.srm import SrmResult, srm_test
from pipeline_components.analysis.summaries import RegressionSummary, SampleMean

__all__ = [
    "Comparison",
    "CupedResult",
    "Decision",
    "EffectResult",
    "Plan",
    "Reason",
    "RegressionSummary",
    "SampleMean",
    "SrmResult",
    "VariantMetrics",
    "analyze",
    "analyze_frames",
    "boundaries",
    "codes",
    "cuped",
    "fixed_information",
    "gst_test",
    "inflation_factor",
    "msprt_test",
    "plan",
    "proportion_test",
    "srm_test",
    "tau2_for_horizon",
    "welch_test",
]
