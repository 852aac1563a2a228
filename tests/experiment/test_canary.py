"""The ramp's stop rule and final decision (pure), and the run-conf glue."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline_components.config import DEFAULT_PARAMS
from pipeline_components.errors import ConfigError
from pipeline_components.experiment.canary import final_decision, step_weights, stop_reason
from pipeline_components.experiment.config import (
    conf_from_form,
    config_for,
    experiment_id_from_run,
    form_overrides,
)

CONTINUE = {"action": "continue", "reasons": [["NOT_ENOUGH_DATA", "n=10 < 100", False]]}


@pytest.mark.parametrize(("decision", "breaker", "elapsed", "want"), [
    (CONTINUE, {}, 1.0, None),
    (CONTINUE, {"tripped": True, "reason": "error rate"}, 1.0, "breaker"),
    ({"action": "promote", "reasons": []}, {}, 1.0, "promote"),
    ({"action": "rollback", "reasons": []}, {}, 1.0, "rollback"),
    (CONTINUE, {}, 600.0, "budget"),
])
def test_stop_reason(decision: dict, breaker: dict, elapsed: float, want: str | None) -> None:
    assert stop_reason(decision, breaker, elapsed, 600.0) == want


def test_breaker_overrides_a_positive_result() -> None:
    out = final_decision({"action": "promote", "reasons": []}, {"tripped": True, "reason": "p99"},
                         "breaker")
    assert out["action"] == "rollback"
    assert out["reasons"][0]["code"] == "BREAKER" and "p99" in out["reasons"][0]["message"]


def test_inconclusive_ramp_keeps_the_champion() -> None:
    out = final_decision(CONTINUE, {}, None)
    assert out["action"] == "rollback"
    assert [r["code"] for r in out["reasons"]] == ["INCONCLUSIVE_AT_END", "NOT_ENOUGH_DATA"]
    assert final_decision(CONTINUE, {}, "budget")["reasons"][0]["code"] == "TIME_BUDGET"


def test_confident_decisions_pass_through() -> None:
    d = {"action": "promote", "reasons": [{"code": "EFFECT_POSITIVE", "message": "m",
                                           "blocking": False}]}
    assert final_decision(d, {}, "promote") == d
    assert step_weights(0.05) == {"champion": 0.95, "challenger": 0.05}


def test_experiment_id_from_run_ids_is_valid_and_unique() -> None:
    a = experiment_id_from_run("manual__2026-11-23T16:16:32.564534+00:00")
    b = experiment_id_from_run("scheduled__2026-11-24T02:00:00+00:00")
    assert a == "exp-manual-20261123T161632564534"
    assert b == "exp-scheduled-20261124T020000"
    assert experiment_id_from_run("weird run/ü") == "exp-run-weirdrun"


def test_form_values_override_params_and_paths_are_anchored(tmp_path: Path) -> None:
    form = {"families": ["logreg"], "n_trials": 3, "alpha": None, "canary_steps": [0.1, 0.5],
            "overrides": {"training.cv_folds": 2, "experiment.state_dir": "st"}}
    assert form_overrides(form) == {"training.families": ["logreg"], "training.n_trials": 3,
                                    "canary.steps": [0.1, 0.5], "training.cv_folds": 2,
                                    "experiment.state_dir": "st"}
    conf = conf_from_form(DEFAULT_PARAMS, form, "manual__2026-01-01T00:00:00+00:00")
    cfg = config_for(conf)
    assert cfg.experiment.id == "exp-manual-20260101T000000"
    assert cfg.training.n_trials == 3 and cfg.analysis.alpha == 0.05  # None keeps params.yaml
    root = DEFAULT_PARAMS.resolve().parent
    assert cfg.state_dir == root / "st" and cfg.features.out_dir == root / "data/features"
    assert conf_from_form(DEFAULT_PARAMS, {"experiment_id": "mine"}, "x")["experiment_id"] == "mine"


def test_bad_form_values_fail_naming_the_key() -> None:
    with pytest.raises(ConfigError, match="canary.steps"):
        conf_from_form(DEFAULT_PARAMS, {"canary_steps": [0.5, 0.1]}, "manual__x")
    with pytest.raises(ConfigError, match="overrides"):
        form_overrides({"overrides": [1, 2]})


def test_unknown_family_is_refused_at_resolve_naming_its_source(tmp_path: Path) -> None:
    # From the form: the message must not blame params.yaml for a value the user typed.
    with pytest.raises(ConfigError) as exc:
        conf_from_form(DEFAULT_PARAMS, {"families": ["logreg", "xgboost"]}, "manual__x")
    msg = str(exc.value)
    assert msg.startswith("trigger form / run conf: training.families: unknown family 'xgboost'")
    # From the params file: the message names that file.
    bad = tmp_path / "params.yaml"
    bad.write_text(DEFAULT_PARAMS.read_text().replace(
        "families: [logreg, extra_trees, hist_gbdt]", "families: [logreg, xgb]"))
    with pytest.raises(ConfigError) as exc:
        conf_from_form(bad, {"n_trials": 2}, "manual__x")
    assert str(exc.value).startswith(f"{bad}: training.families: unknown family 'xgb'")


def test_ramp_keeps_collecting_at_the_last_step() -> None:
    from pipeline_components.config import load_config
    from pipeline_components.experiment.canary import ramp

    cfg = load_config(DEFAULT_PARAMS, {"canary.steps": [0.05, 0.5], "canary.extra_looks": 2})
    assert ramp(cfg) == [0.05, 0.5, 0.5, 0.5]
    assert ramp(load_config(DEFAULT_PARAMS, {"canary.extra_looks": 0})) == [0.05, 0.25, 0.5]


def test_gst_looks_carry_their_real_information_fractions(tmp_path: Path) -> None:
    # Two looks of a group-sequential canary on a growing log: the second look must be
    # spent at the first look's real information fraction, not an equally spaced guess.
    from pipeline_components.analysis.run import analyze_frames
    from pipeline_components.analysis.testing import CATEGORIES, NUMERIC, SimSpec, simulate_log
    from pipeline_components.config import config_from_mapping
    from pipeline_components.experiment.canary import info_fractions

    cfg = config_from_mapping({
        "experiment": {"id": "exp", "state_dir": str(tmp_path)},
        "data": {"numeric_features": NUMERIC, "categorical_features": CATEGORIES,
                 "synthetic": {"n_numeric": len(NUMERIC)}},
        "analysis": {"method": "gst", "mde": 0.05, "cuped": False},
    })
    weights = {"champion": 0.5, "challenger": 0.5}
    steps: list[dict] = []
    for look, n in enumerate((300, 900), 1):
        log = simulate_log(SimSpec(n_units=n, seed=look))
        d = analyze_frames(cfg, log.predictions, log.feedback, expected_weights=weights,
                           look=look, previous_fractions=info_fractions(steps))
        steps.append({"decision": d.to_dict()})
    fracs = info_fractions(steps)["challenger"]  # per challenger: A/B/n has one history each
    assert len(fracs) == 2 and 0.0 < fracs[0] < fracs[1] <= 1.0
    assert info_fractions([{"decision": None}, {}]) == {}  # msprt / missing looks: nothing


def test_srm_covers_every_step_at_the_current_weights() -> None:
    from pipeline_components.experiment.canary import weights_since

    steps = [{"share": 0.05, "started_at": 1.0}, {"share": 0.5, "started_at": 2.0},
             {"share": 0.5, "started_at": 3.0}]
    assert weights_since(steps, 0.5) == 2.0  # extra looks at 50%: all units since 50% began
    assert weights_since(steps, 0.25) is None  # new weights: the step's own start
    assert weights_since([], 0.05) is None
