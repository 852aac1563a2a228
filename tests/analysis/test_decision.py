"""Every reason the decision can give is produced here by a log that should produce it."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.multitest import multipletests

from pipeline_components.analysis import Decision, analyze_frames, codes
from pipeline_components.analysis.testing import SimSpec, simulate_log
from pipeline_components.config import Config

HALF = {"champion": 0.5, "challenger": 0.5}


@dataclass(frozen=True)
class Case:
    spec: SimSpec
    action: str
    analysis: dict[str, Any] = field(default_factory=dict)
    expected: dict[str, float] = field(default_factory=lambda: dict(HALF))
    drift_reference: bool = False


def _rates(c: float, t: float) -> dict[str, float]:
    return {"champion": c, "challenger": t}


CASES: dict[str, Case] = {
    codes.EFFECT_POSITIVE: Case(SimSpec(reward_rate=_rates(0.5, 0.65)), "promote"),
    codes.EFFECT_NEGATIVE: Case(SimSpec(reward_rate=_rates(0.65, 0.5)), "rollback"),
    codes.EFFECT_INCONCLUSIVE: Case(SimSpec(), "continue"),
    codes.NO_EFFECT_AT_HORIZON: Case(SimSpec(), "rollback", {"method": "gst", "mde": 0.2}),
    codes.FUTILITY: Case(SimSpec(), "rollback", {"method": "gst", "mde": 0.05}),
    codes.NOT_ENOUGH_DATA: Case(SimSpec(n_units=120), "continue"),
    codes.SRM: Case(SimSpec(reward_rate=_rates(0.5, 0.65)), "rollback",
                    expected={"champion": 0.8, "challenger": 0.2}),
    codes.GUARDRAIL_ERROR_RATE: Case(
        SimSpec(reward_rate=_rates(0.5, 0.65), error_rate=_rates(0.01, 0.15)), "rollback"),
    codes.GUARDRAIL_LATENCY: Case(
        SimSpec(reward_rate=_rates(0.5, 0.65), latency_ms=_rates(20.0, 200.0)), "rollback"),
    codes.GUARDRAIL_UNPROVEN: Case(SimSpec(n_units=500, reward_rate=_rates(0.3, 0.8)), "continue"),
    codes.DRIFT: Case(SimSpec(reward_rate=_rates(0.5, 0.65), drift=1.0), "continue",
                      drift_reference=True),
    codes.PENDING_FEEDBACK: Case(SimSpec(reward_rate=_rates(0.5, 0.65), pending_share=0.2),
                                 "promote"),
    codes.SHADOW_BETTER: Case(SimSpec(shadow=True, noise=_rates(0.5, 0.2)), "promote",
                              expected={"champion": 1.0}),
    codes.SHADOW_WORSE: Case(SimSpec(shadow=True, noise=_rates(0.2, 0.6)), "rollback",
                             expected={"champion": 1.0}),
}
RESULT_LEVEL = {codes.ZERO_VARIANCE, codes.NO_COVARIATE}


CfgWith = Callable[..., Config]


def run_case(cfg_with: CfgWith, case: Case) -> Decision:
    cfg = cfg_with(**case.analysis)
    log = simulate_log(case.spec)
    return analyze_frames(cfg, log.predictions, log.feedback, expected_weights=case.expected,
                          reference=log.reference if case.drift_reference else None)


def test_every_decision_code_has_a_case() -> None:
    declared = {v for k, v in vars(codes).items() if k.isupper() and isinstance(v, str)}
    assert declared - RESULT_LEVEL == set(CASES)


@pytest.mark.parametrize("code", sorted(CASES))
def test_reason_is_produced(cfg_with: CfgWith, code: str) -> None:
    case = CASES[code]
    d = run_case(cfg_with, case)
    assert code in d.codes(), [r.message for r in d.reasons]
    assert d.action == case.action, [(r.code, r.message) for r in d.reasons]
    reason = next(r for r in d.reasons if r.code == code)
    assert reason.message
    assert reason.blocking == (code not in {codes.EFFECT_POSITIVE, codes.PENDING_FEEDBACK,
                                            codes.SHADOW_BETTER})
    if d.action == "promote":
        assert d.winner == "challenger"


def test_srm_message_names_counts(cfg_with: CfgWith) -> None:
    d = run_case(cfg_with, CASES[codes.SRM])
    msg = next(r.message for r in d.reasons if r.code == codes.SRM)
    assert "observed units" in msg and "expected" in msg and "challenger=" in msg


def test_srm_uses_units_since_the_step_start(cfg_with: CfgWith) -> None:
    # The first half of the units came in at 90/10, the second half at 50/50: checking the second
    # step against its own weights passes, checking all units against 50/50 does not.
    cfg = cfg_with()
    a = simulate_log(SimSpec(n_units=4000, weights={"champion": 0.9, "challenger": 0.1}))
    b = simulate_log(SimSpec(n_units=4000, seed=1, t0=1_800_000_000.0))
    b.predictions["unit_id"] = "b" + b.predictions["unit_id"]
    b.feedback["unit_id"] = "b" + b.feedback["unit_id"]
    for f in (b.predictions, b.feedback):
        f["request_id"] = "b" + f["request_id"]
    preds = pd.concat([a.predictions, b.predictions])
    fb = pd.concat([a.feedback, b.feedback])
    step = analyze_frames(cfg, preds, fb, expected_weights=HALF, srm_since_ts=1_800_000_000.0)
    whole = analyze_frames(cfg, preds, fb, expected_weights=HALF)
    assert step.srm is not None and not step.srm.mismatch
    assert sum(step.srm.observed.values()) == 4000
    assert codes.SRM in whole.codes()


def test_untestable_srm_blocks_promotion(cfg_with: CfgWith) -> None:
    # A clear winner, but the current step has too few units to check the split (< 5 expected
    # per arm): promotion waits until the split can be checked.
    log = simulate_log(SimSpec(reward_rate=_rates(0.5, 0.65)))
    last_ts = float(log.predictions["ts"].iloc[-6])
    d = analyze_frames(cfg_with(), log.predictions, log.feedback, expected_weights=HALF,
                       srm_since_ts=last_ts)
    assert d.srm is not None and d.srm.reason == codes.NOT_ENOUGH_DATA
    assert d.action == "continue" and codes.EFFECT_POSITIVE in d.codes()
    srm_reason = next(r for r in d.reasons if "sample ratio" in r.message)
    assert srm_reason.blocking and srm_reason.code == codes.NOT_ENOUGH_DATA


def test_shadow_canary_split_is_no_srm(cfg_with: CfgWith) -> None:
    # In shadow mode users are all served by the champion whatever the step weights say; the
    # canary must check SRM against that, or every shadow run rolls back.
    from pipeline_components.experiment.canary import srm_weights, step_weights

    cfg = cfg_with()
    cfg = cfg.model_copy(update={"serving": cfg.serving.model_copy(update={"shadow": True})})
    log = simulate_log(SimSpec(shadow=True, noise=_rates(0.5, 0.2)))
    d = analyze_frames(cfg, log.predictions, log.feedback,
                       expected_weights=srm_weights(cfg, step_weights(0.25)))
    assert codes.SRM not in d.codes() and d.action == "promote", d.codes()


def test_pending_counts_are_reported_not_failures(cfg_with: CfgWith) -> None:
    d = run_case(cfg_with, CASES[codes.PENDING_FEEDBACK])
    m = d.metrics["challenger"]
    assert m.pending > 0 and m.quality is not None and m.quality.n_pending == m.pending
    assert m.error_rate == 0.0
    assert m.units_with_feedback < m.units


def test_cuped_is_used_and_reported(cfg_with: CfgWith) -> None:
    cfg = cfg_with()
    log = simulate_log(SimSpec(reward_rate=_rates(0.5, 0.5), covariate_rho=1.5))
    d = analyze_frames(cfg, log.predictions, log.feedback, expected_weights=HALF,
                       covariates=log.covariates)
    cmp = d.comparisons[0]
    assert cmp.effect.method == f"{cfg.analysis.method}+cuped"
    assert cmp.cuped is not None and cmp.cuped.variance_reduction > 0.02
    off = analyze_frames(cfg_with(cuped=False), log.predictions, log.feedback,
                         expected_weights=HALF, covariates=log.covariates)
    assert off.comparisons[0].effect.method == cfg.analysis.method
    assert off.comparisons[0].cuped is None


@pytest.mark.parametrize("method", ["msprt", "fixed"])
def test_abn_uses_holm(cfg_with: CfgWith, method: str) -> None:
    # mde 0.1: ~1,000 units per arm are past the fixed horizon (the fixed test may decide).
    cfg = cfg_with(method=method, mde=0.1)
    weights = {"champion": 1 / 3, "b": 1 / 3, "c": 1 / 3}
    log = simulate_log(SimSpec(n_units=3000, weights=weights,
                               reward_rate={"champion": 0.5, "b": 0.5, "c": 0.62}))
    d = analyze_frames(cfg, log.predictions, log.feedback, expected_weights=weights)
    raw = [c.effect.p_value for c in d.comparisons]
    _, adj, _, _ = multipletests(raw, method="holm")
    assert [c.p_adjusted for c in d.comparisons] == pytest.approx(list(adj), abs=1e-12)
    assert [c.variant for c in d.comparisons] == ["b", "c"]
    assert d.action == "promote" and d.winner == "c"


def test_fixed_waits_for_its_planned_sample(cfg_with: CfgWith) -> None:
    # 2,000 units are ~10% of the information the default design (mde 0.02) plans for: a clear
    # lift is shown with its interval, but a fixed-horizon test may not decide before its horizon.
    log = simulate_log(SimSpec(n_units=2000, reward_rate=_rates(0.5, 0.6)))
    d = analyze_frames(cfg_with(method="fixed"), log.predictions, log.feedback,
                       expected_weights=HALF)
    e = d.comparisons[0].effect
    assert e.details["final"] is False and e.details["info_fraction"] < 0.2
    assert not e.significant and e.ci[0] > 0  # the interval alone would say "better"
    assert d.action == "continue" and codes.EFFECT_INCONCLUSIVE in d.codes()


def test_fixed_aa_false_decisions_under_peeking_stay_at_alpha(cfg_with: CfgWith) -> None:
    # 10 looks at a fixed test's arms, only the horizon may decide: A/A decisions are the
    # fixed test's 5%, not the ~20% of naive peeking (300 seeded runs; bound 5% + 3 SE).
    from pipeline_components.analysis.effects import fixed_at_horizon
    from pipeline_components.analysis.summaries import SampleMean

    cfg = cfg_with(method="fixed", mde=0.1, metric_type="continuous")
    rng = np.random.default_rng(7)
    reps, looks, per_look = 300, 10, 160  # the horizon (2/0.1^2 x 7.85 ~ 1570/arm) at look 10
    x0 = rng.normal(0, 1, (reps, looks, per_look))
    x1 = rng.normal(0, 1, (reps, looks, per_look))
    sums = [(x.sum(2).cumsum(1), (x**2).sum(2).cumsum(1)) for x in (x0, x1)]
    decided = 0
    for r in range(reps):
        for k in range(looks):
            n = (k + 1) * per_look
            arms = [SampleMean(n, float(s[r, k]), float(q[r, k])) for s, q in sums]
            if fixed_at_horizon(cfg, arms[0], arms[1], False, ("a", "b")).significant:
                decided += 1
                break
    assert decided / reps <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / reps)


def test_switched_units_count_once(cfg_with: CfgWith) -> None:
    cfg = cfg_with()
    log = simulate_log(SimSpec(n_units=400, requests_per_unit=2))
    preds = log.predictions.copy()
    later = preds["request_id"].str[1:].astype(int) >= 400  # second request of each unit
    flip = later & (preds["variant"] == "champion")
    preds.loc[flip, "variant"] = "challenger"
    d = analyze_frames(cfg, preds, log.feedback, expected_weights=HALF)
    assert d.switched_units == int(flip.sum())
    assert sum(m.units for m in d.metrics.values()) == 400


def test_decision_round_trips_as_strict_json(cfg_with: CfgWith) -> None:
    d = run_case(cfg_with, CASES[codes.DRIFT])
    text = d.to_json()
    json.loads(text)  # strict JSON: no NaN tokens (allow_nan=False would have raised)
    back = Decision.from_json(text)
    assert back.to_dict() == d.to_dict()
    assert back.comparisons[0].effect.ci == d.comparisons[0].effect.ci
    assert isinstance(back.reasons[0].blocking, bool) and back.drift[0].feature


def test_missing_columns_fail_with_the_column_name(cfg_with: CfgWith) -> None:
    from pipeline_components.errors import AnalysisError

    log = simulate_log(SimSpec(n_units=100))
    with pytest.raises(AnalysisError, match="latency_ms"):
        analyze_frames(cfg_with(), log.predictions.drop(columns="latency_ms"),
                       log.feedback, expected_weights=HALF)




def test_empty_log_means_keep_collecting(cfg_with: CfgWith) -> None:
    from pipeline_components.store import feedback, predictions

    empty_p = pd.DataFrame(columns=[c.name for c in predictions.c])
    empty_f = pd.DataFrame(columns=[c.name for c in feedback.c])
    d = analyze_frames(cfg_with(), empty_p, empty_f, expected_weights=HALF)
    assert d.action == "continue" and codes.NOT_ENOUGH_DATA in d.codes()
    json.loads(d.to_json())


def test_unit_level_feedback_is_credited_to_the_units_variant(cfg_with: CfgWith) -> None:
    log = simulate_log(SimSpec(n_units=400))
    fb = log.feedback.assign(request_id=None)  # feedback that names only the user
    d = analyze_frames(cfg_with(), log.predictions, fb, expected_weights=HALF)
    by_request = analyze_frames(cfg_with(), log.predictions, log.feedback, expected_weights=HALF)
    for v in ("champion", "challenger"):
        assert d.metrics[v].primary_mean == pytest.approx(by_request.metrics[v].primary_mean)
        assert d.metrics[v].units_with_feedback == by_request.metrics[v].units_with_feedback


def test_reason_dicts_reads_every_stored_form() -> None:
    # Reasons reach the canary, the registry tags and the report in all of these shapes.
    from pipeline_components.analysis.decision import Reason, reason_dicts

    got = reason_dicts([
        Reason("SRM", "ratio off", True),
        {"code": "EFFECT_POSITIVE", "message": "better", "blocking": False,
         "variant": "challenger"},
        ["DRIFT", "x0 moved", 1],
        ("NOTE_ONLY", "two fields"),
        "free text",
    ])
    assert got == [
        {"code": "SRM", "message": "ratio off", "blocking": True},
        {"code": "EFFECT_POSITIVE", "message": "better", "blocking": False,
         "variant": "challenger"},
        {"code": "DRIFT", "message": "x0 moved", "blocking": True},
        {"code": "NOTE_ONLY", "message": "two fields", "blocking": False},
        {"code": "NOTE", "message": "free text", "blocking": False},
    ]
    assert reason_dicts(None) == []


def test_numeric_drift_is_checked_when_numeric_features_is_left_empty(tmp_path: Any) -> None:
    # An empty numeric_features list means x0..x{n-1} (data.synthetic.n_numeric) everywhere,
    # the drift check included: it must not silently check no numeric feature at all.
    from pipeline_components.analysis.testing import CATEGORIES, NUMERIC
    from pipeline_components.config import config_from_mapping

    cfg = config_from_mapping({
        "experiment": {"id": "exp", "state_dir": str(tmp_path / ".abx")},
        "data": {"numeric_features": [], "categorical_features": CATEGORIES,
                 "synthetic": {"n_numeric": len(NUMERIC)}}})
    log = simulate_log(SimSpec(reward_rate=_rates(0.5, 0.65), drift=1.0))
    decision = analyze_frames(cfg, log.predictions, log.feedback, expected_weights=HALF,
                              reference=log.reference)
    checked = {d.feature for d in decision.drift}
    assert set(NUMERIC) <= checked
    assert codes.DRIFT in decision.codes()
