"""The traffic simulator against a real HTTP endpoint on loopback."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from pipeline_components.errors import ConfigError
from pipeline_components.experiment.simulate import (
    User,
    requests_for_step,
    reward_of,
    simulate_users,
    take,
    users_from_frame,
)


def _users(n: int) -> list[User]:
    # label 1 exactly when x0 > 0 for even ids; flipped for every 5th user
    out = []
    for i in range(n):
        x0 = 1.0 if i % 3 else -1.0
        label = int(x0 > 0) if i % 5 else int(x0 <= 0)
        out.append(User(str(i), {"x0": x0, "x1": 0.5}, label))
    return out


@pytest.mark.parametrize(("pred", "label", "want"), [
    (0.9, 1, 1.0), (0.9, 0, 0.0), (0.1, 0, 1.0), (0.1, 1, 0.0), (0.5, 1, 1.0), (0.49, 1, 0.0),
])
def test_reward_is_decision_correctness(pred: float, label: int, want: float) -> None:
    assert reward_of(pred, label) == want


def test_every_user_sent_once_with_feedback(recorder_url: tuple) -> None:
    url, rec = recorder_url
    users = _users(120)
    res = simulate_users(url, users, rate_per_s=2000, concurrency=4, progress=False)
    assert res.sent == res.answered == res.feedback_sent == 120
    assert sorted(int(p["unit_id"]) for p in rec.predicts) == list(range(120))
    # concurrency is bounded by the configured number of workers
    assert 1 <= rec.max_in_flight <= 4
    by_id = {u.unit_id: u for u in users}
    for fb in rec.feedback:
        user = by_id[fb["unit_id"]]
        pred = 0.9 if user.features["x0"] > 0 else 0.1
        assert fb["request_id"] == f"r{user.unit_id}"
        assert fb["outcome"] == float(user.label)
        assert fb["reward"] == reward_of(pred, user.label)
    assert res.reward_sum == sum(fb["reward"] for fb in rec.feedback)
    assert sum(res.per_variant.values()) == 120


def test_users_are_spread_over_every_replica_with_their_outcomes(
        two_recorders: list[tuple[str, Any]]) -> None:
    users = _users(101)
    res = simulate_users([u for u, _ in two_recorders], users, rate_per_s=2000, concurrency=4,
                         progress=False)
    assert res.sent == res.answered == res.feedback_sent == 101
    (_, a), (_, b) = two_recorders
    assert (len(a.predicts), len(b.predicts)) == (51, 50)  # round-robin: user i to replica i % 2
    sent = sorted(int(p["unit_id"]) for p in a.predicts + b.predicts)
    assert sent == list(range(101))  # each user exactly once
    for rec in (a, b):  # an outcome goes to the replica that answered its request
        assert sorted(f["unit_id"] for f in rec.feedback) == sorted(p["unit_id"]
                                                                      for p in rec.predicts)


def test_refuses_non_loopback_targets() -> None:
    with pytest.raises(ConfigError, match="loopback"):
        simulate_users("http://example.com:80", _users(1), rate_per_s=1, concurrency=1,
                       progress=False)
    with pytest.raises(ConfigError, match="loopback"):  # every replica is checked
        simulate_users(["http://127.0.0.1:9", "http://example.com:80"], _users(1), rate_per_s=1,
                       concurrency=1, progress=False)


def test_nothing_answered_is_an_error() -> None:
    from pipeline_components.errors import DeploymentError

    with pytest.raises(DeploymentError, match="answered none"):
        simulate_users("http://127.0.0.1:9", _users(3), rate_per_s=100, concurrency=2,
                       timeout_s=0.5, progress=False)


def test_users_from_frame_names_missing_columns() -> None:
    df = pd.DataFrame({"user_id": [1, 2], "converted": [0, 1], "x0": [0.1, 0.2]})
    users = users_from_frame(df, "user_id", "converted", ["x0"])
    assert users[1] == User("2", {"x0": 0.2}, 1)
    assert isinstance(users[0].features["x0"], float)  # numpy scalars become JSON-native
    with pytest.raises(ConfigError, match="x9"):
        users_from_frame(df, "user_id", "converted", ["x0", "x9"])


def test_take_wraps_and_step_sizes() -> None:
    users = _users(5)
    assert [u.unit_id for u in take(users, 3, 4)] == ["3", "4", "0", "1"]
    assert requests_for_step(0.5, 100, 10_000) == 220   # 100 per arm at 50/50, +10%
    assert requests_for_step(0.05, 100, 10_000) == 2200
    assert requests_for_step(0.05, 100, 1000) == 1000   # capped by simulator.max_requests


def test_known_lift_draws_the_stated_rates_per_variant() -> None:
    from pipeline_components.experiment.simulate import KnownLift

    truth = KnownLift(0.1, base_rate=0.3, seed=5)
    ids = [str(i) for i in range(20_000)]
    champ = sum(truth.reward(u, "champion") for u in ids) / len(ids)
    chall = sum(truth.reward(u, "challenger") for u in ids) / len(ids)
    assert champ == pytest.approx(0.3, abs=0.015)
    assert chall - champ == pytest.approx(0.1, abs=0.015)
    # one draw per user, whichever variant serves them: lift only ever turns 0 into 1
    assert all(truth.reward(u, "challenger") >= truth.reward(u, "champion") for u in ids[:2000])
    assert truth.reward("7", "b") == KnownLift(0.1, 0.3, seed=5).reward("7", "b")  # reproducible
    assert KnownLift(0.0, 0.3, seed=6).uniform("7") != truth.uniform("7")  # keyed by the seed


@pytest.mark.parametrize(("base", "lift"), [(0.95, 0.1), (0.05, -0.1)])
def test_known_lift_outside_zero_one_is_refused_naming_the_keys(base: float, lift: float) -> None:
    from pipeline_components.config import load_config
    from pipeline_components.experiment.simulate import KnownLift

    with pytest.raises(ConfigError, match="base_rate .* true_lift"):
        KnownLift(lift, base_rate=base)
    with pytest.raises(ConfigError, match=r"simulator\.base_rate \+ simulator\.true_lift"):
        load_config(None, {"simulator.true_lift": lift, "simulator.base_rate": base})


def test_simulated_rewards_carry_the_known_lift_not_the_predictions(recorder_url: tuple) -> None:
    from pipeline_components.experiment.simulate import KnownLift

    url, rec = recorder_url
    truth = KnownLift(0.25, base_rate=0.5, seed=1)
    res = simulate_users(url, _users(600), rate_per_s=5000, concurrency=8, progress=False,
                         truth=truth)
    assert res.true_lift == 0.25 and res.answered == 600
    by_variant = {v: res.reward_per_variant[v] / res.per_variant[v] for v in res.per_variant}
    assert by_variant["champion"] == pytest.approx(0.5, abs=0.07)
    assert by_variant["challenger"] - by_variant["champion"] == pytest.approx(0.25, abs=0.09)
    for fb in rec.feedback:  # the reward posted is the drawn one; the outcome stays the label
        variant = "challenger" if int(fb["unit_id"]) % 2 else "champion"
        assert fb["reward"] == truth.reward(fb["unit_id"], variant)
