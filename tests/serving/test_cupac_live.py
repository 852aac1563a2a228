"""CUPAC on a real run: a router serving the two registered models over HTTP writes the log, the
canary's loader (``canary.champion_scorer``) loads the champion alias, and the analysis adjusts
the primary metric with the champion's score of each unit's first request."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from pipeline_components.analysis.cupac import cupac_covariates, metric_prediction
from pipeline_components.analysis.frames import prepare
from pipeline_components.analysis.run import analyze
from pipeline_components.config import Config
from pipeline_components.experiment.canary import champion_scorer, wants_cupac
from pipeline_components.experiment.simulate import User, simulate_users
from pipeline_components.serving.testing import TEST_CLIENT_KEY, ThreadServer
from pipeline_components.store import make_engine, predictions, read_feedback, read_frame

HALF = {"champion": 0.5, "challenger": 0.5}


def test_cupac_with_the_registered_champion(
    make_cfg: Callable[..., Config], rows: list[dict[str, Any]]
) -> None:
    cfg = make_cfg({"experiment.id": "cupac-live", "serving.weights": HALF,
                    "analysis.method": "fixed",
                    "analysis.metric_type": "continuous", "analysis.cuped_covariate": "cupac",
                    "serving.guardrails.max_latency_ms": 60_000.0,
                    "analysis.latency_margin_ms": 60_000.0})
    assert wants_cupac(cfg, has_pre_period=True)
    users = [User(f"u{i}", rows[i % len(rows)], 0) for i in range(600)]
    server = ThreadServer(cfg).start()
    try:
        res = simulate_users(server.url, users, rate_per_s=5000, concurrency=4, progress=False,
                             client_key=TEST_CLIENT_KEY)
    finally:
        server.stop()
    assert res.answered == 600
    scorer = champion_scorer(cfg)
    assert scorer is not None
    eng = make_engine(cfg.store_url)
    prep = prepare(read_frame(eng, predictions, cfg.experiment.id),
                   read_feedback(eng, cfg.experiment.id), "reward")
    cov = cupac_covariates(prep.served, scorer, "reward").set_index("unit_id")["x"]
    # the loader's champion is the router's: on champion-served units the covariate is the
    # champion's own logged score of the same request
    champ = prep.served[prep.served["variant"] == "champion"].drop_duplicates("unit_id")
    assert len(champ) > 200 and cov.index.size == prep.assignment.shape[0]
    np.testing.assert_allclose(cov.loc[champ["unit_id"]].to_numpy(),
                               metric_prediction(champ["prediction"].to_numpy(), "reward"),
                               rtol=0, atol=1e-9)
    d = analyze(cfg, expected_weights=HALF, champion_scorer=scorer)
    cmp = d.comparisons[0]
    assert cmp.effect.method == "welch+cupac" and cmp.cuped is not None
    assert np.isfinite(cmp.cuped.variance_reduction)


def test_a_champion_that_cannot_load_leaves_cupac_off(
    make_cfg: Callable[..., Config], caplog: pytest.LogCaptureFixture
) -> None:
    cfg = make_cfg({"registry.model_name": "no-such-model"})
    assert champion_scorer(cfg) is None
    assert "CUPAC off for this look" in caplog.text
