"""Ramps analysed by phase: no Simpson's paradox when weights and traffic change between steps."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from pipeline_components.analysis import analyze_frames, codes
from pipeline_components.analysis.testing import SimSpec, simulate_log
from pipeline_components.config import Config

T1, T2 = 1_700_000_000.0, 1_700_100_000.0


def _ramp() -> tuple[pd.DataFrame, pd.DataFrame]:
    # Step 1 (95/5) comes on a low day, step 2 (50/50) on a high day; the challenger is 5 points
    # worse in both. Pooled "first variant per unit" puts most champion units on the low day.
    a = simulate_log(SimSpec(n_units=4000, weights={"champion": 0.95, "challenger": 0.05},
                             reward_rate={"champion": 0.2, "challenger": 0.15}, t0=T1))
    b = simulate_log(SimSpec(n_units=4000, seed=1, t0=T2,
                             reward_rate={"champion": 0.6, "challenger": 0.55}))
    for f in (b.predictions, b.feedback):
        f["unit_id"] = "b" + f["unit_id"]
        f["request_id"] = "b" + f["request_id"]
    return (pd.concat([a.predictions, b.predictions], ignore_index=True),
            pd.concat([a.feedback, b.feedback], ignore_index=True))


def test_phases_undo_simpsons_paradox(cfg_with: Callable[..., Config]) -> None:
    preds, fb = _ramp()
    cfg = cfg_with(cuped=False)
    weights = {"champion": 0.5, "challenger": 0.5}
    pooled = analyze_frames(cfg, preds, fb, expected_weights=weights, srm_since_ts=T2)
    assert pooled.comparisons[0].effect.lift > 0.1  # the paradox: "better" by 10+ points
    d = analyze_frames(cfg, preds, fb, expected_weights=weights, srm_since_ts=T2,
                       phase_starts=[T1, T2])
    eff = d.comparisons[0].effect
    assert -0.09 < eff.lift < -0.01 and d.action != "promote"
    per = [p for p in d.phases if p.phase >= 0]
    assert [p.phase for p in per] == [0, 1] and all(p.lift < 0 for p in per)
    combined = next(p for p in d.phases if p.phase == -1)
    assert combined.ci[1] < 0 and codes.EFFECT_POSITIVE not in d.codes()
