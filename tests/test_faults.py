"""The fault-injection seam: off by default (no hook at all), and exactly what it says when on."""

from __future__ import annotations

import pytest

from pipeline_components.config import load_config
from pipeline_components.errors import DeploymentError
from pipeline_components.faults import InjectedFailure, canary_fault, variant_fault


def test_faults_are_off_by_default_and_cost_nothing() -> None:
    cfg = load_config(None)
    assert variant_fault(cfg) is None  # the router keeps no hook: nothing runs per request
    canary_fault(cfg)  # does not raise


def test_challenger_failure_rate_spares_the_champion() -> None:
    hook = variant_fault(load_config(None, {"faults.challenger_failure_rate": 1.0}))
    assert hook is not None
    hook("champion")
    with pytest.raises(InjectedFailure, match="faults.challenger_failure_rate=1.0"):
        hook("challenger")


def test_challenger_failure_rate_is_a_seeded_share() -> None:
    hook = variant_fault(load_config(None, {"faults.challenger_failure_rate": 0.3}), seed=7)
    assert hook is not None
    failed = 0
    for _ in range(2000):
        try:
            hook("challenger")
        except InjectedFailure:
            failed += 1
    assert 0.25 < failed / 2000 < 0.35


def test_fail_canary_raises_a_deployment_error_naming_the_knob() -> None:
    with pytest.raises(DeploymentError, match="faults.fail_canary"):
        canary_fault(load_config(None, {"faults.fail_canary": True}))
