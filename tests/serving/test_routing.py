"""The assignment function: weighted within tolerance, sticky, monotonic under ramps."""

from __future__ import annotations

import math

import pytest

from pipeline_components.serving.routing import RoutingTable, assign_variant, bucket

IDS = [f"user-{i}" for i in range(10_000)]


@pytest.mark.parametrize("share", [0.05, 0.1, 0.5, 0.9])
def test_split_ratio_within_binomial_tolerance(share: float) -> None:
    weights = {"champion": 1 - share, "challenger": share}
    n = sum(assign_variant(u, "salt-a", weights) == "challenger" for u in IDS)
    sd = math.sqrt(len(IDS) * share * (1 - share))
    assert abs(n - len(IDS) * share) < 4.5 * sd  # 4.5 sigma: a real skew fails, noise does not


def test_sticky_for_same_salt_and_reshuffled_by_new_salt() -> None:
    w = {"champion": 0.5, "challenger": 0.5}
    first = [assign_variant(u, "s1", w) for u in IDS[:2000]]
    assert first == [assign_variant(u, "s1", w) for u in IDS[:2000]]
    other = [assign_variant(u, "s2", w) for u in IDS[:2000]]
    assert 0.4 < sum(a != b for a, b in zip(first, other, strict=True)) / 2000 < 0.6


def test_ramp_is_monotonic() -> None:
    # A unit in the challenger at 5% must still be there at 25% and 50%.
    def arm(share: float) -> set[str]:
        w = {"champion": 1 - share, "challenger": share}
        return {u for u in IDS if assign_variant(u, "ramp", w) == "challenger"}

    a5, a25, a50 = arm(0.05), arm(0.25), arm(0.5)
    assert a5 and a5 <= a25 <= a50
    assert len(a5) < len(a25) < len(a50)


def test_unnormalised_and_zero_weights() -> None:
    assert {assign_variant(u, "z", {"champion": 3, "challenger": 0}) for u in IDS[:500]} == {
        "champion"
    }
    w = {"champion": 2.0, "challenger": 2.0}
    assert RoutingTable.from_weights(w).as_dict() == {"challenger": 0.5, "champion": 0.5}


@pytest.mark.parametrize(
    "weights", [{}, {"champion": 0.0}, {"champion": -0.1, "challenger": 1.0},
                {"champion": float("nan")}, {"champion": float("inf")}]
)
def test_bad_weights_rejected(weights: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="weights"):
        RoutingTable.from_weights(weights)


def test_bucket_is_uniform_and_in_range() -> None:
    pts = [bucket(u, "b") for u in IDS]
    assert all(0.0 <= p < 1.0 for p in pts)
    assert abs(sum(pts) / len(pts) - 0.5) < 0.02
