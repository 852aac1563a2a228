"""The control state on a real SQLite store: versioned changes, the rules they enforce, events."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline_components.errors import ConfigError, ExperimentLockedError
from pipeline_components.serving.control import ControlStore, VariantState, make_control_engine


def _v(name: str, version: str, by: str = "test") -> VariantState:
    return VariantState(name, f"models:/m/{version}", f"models:/m/{version}", version, 0.0, by)


@pytest.fixture
def store(tmp_path: Path) -> ControlStore:
    s = ControlStore(make_control_engine(f"sqlite:///{tmp_path}/control.db"))
    assert s.create("ep", _v("champion", "1"), "ep", "test")
    return s


def test_every_change_bumps_the_version_and_leaves_an_event(store: ControlStore) -> None:
    assert not store.create("ep", _v("champion", "9"), "ep", "again")  # exists: unchanged
    v1 = store.version("ep")
    store.load("ep", _v("challenger", "2"), "test")
    store.set_weights("ep", {"challenger": 0.25}, "test")
    assert store.version("ep") == v1 + 2
    kinds = [e["kind"] for e in store.events("ep")]
    assert kinds == ["create", "load", "weights"]
    assert store.snapshot("ep").weights() == {"champion": 1.0, "challenger": 0.25}


def test_bad_changes_are_refused_and_change_nothing(store: ControlStore) -> None:
    before = store.version("ep")
    with pytest.raises(ConfigError, match="weights.nope: unknown variant"):
        store.set_weights("ep", {"nope": 1.0}, "test")
    with pytest.raises(ConfigError, match="weights.champion"):
        store.set_weights("ep", {"champion": -1.0}, "test")
    with pytest.raises(ConfigError, match="champion cannot be unloaded"):
        store.unload("ep", "champion", "test")
    with pytest.raises(ConfigError, match="endpoint 'other': not found"):
        store.snapshot("other")
    assert store.version("ep") == before and len(store.events("ep")) == 1


def test_a_tripped_breaker_pins_the_champion_until_reset(store: ControlStore) -> None:
    store.load("ep", _v("challenger", "2"), "test")
    store.set_weights("ep", {"challenger": 0.5}, "test")
    store.trip_breaker("ep", "error rate 0.9 > 0.05", "replica-a")
    assert store.trip_breaker("ep", "again", "replica-b") is None  # once
    snap = store.snapshot("ep")
    assert snap.breaker_tripped and snap.weights() == {"champion": 1.0, "challenger": 0.0}
    with pytest.raises(PermissionError, match="breaker tripped"):
        store.set_weights("ep", {"challenger": 0.1}, "test")
    store.set_weights("ep", {"challenger": 0.1}, "test", reset_breaker=True)
    assert not store.snapshot("ep").breaker_tripped


def test_promote_swaps_the_champion_in_place_and_is_idempotent(store: ControlStore) -> None:
    store.load("ep", _v("challenger", "2"), "exp-1")
    store.promote("ep", "challenger", "exp-1")
    snap = store.snapshot("ep")
    assert list(snap.variants) == ["champion"]
    assert snap.variants["champion"].model_version == "2" and snap.weights()["champion"] == 1.0
    assert store.promote("ep", "challenger", "exp-1") is None


def test_one_experiment_at_a_time_and_detach_removes_only_its_variants(
        store: ControlStore) -> None:
    store.load("ep", _v("ops-variant", "3", by="cli"), "cli")
    store.attach("ep", "exp-1", "salt-1")
    assert store.attach("ep", "exp-1", "salt-1") is None  # a retry
    with pytest.raises(ExperimentLockedError, match="exp-1"):
        store.attach("ep", "exp-2", "salt-2")
    store.load("ep", _v("challenger", "2", by="exp-1"), "exp-1")
    store.trip_breaker("ep", "p99", "replica")
    out = store.detach("ep", "exp-1")
    snap = store.snapshot("ep")
    assert out["unloaded"] == ["challenger"] and sorted(snap.variants) == ["champion",
                                                                           "ops-variant"]
    assert snap.experiment_id is None and snap.salt == "ep" and not snap.breaker_tripped
    assert store.detach("ep", "exp-1") == {"detached": False, "unloaded": []}


def test_a_failed_load_is_dropped_for_everyone_with_the_reason(store: ControlStore) -> None:
    store.load("ep", _v("challenger", "2"), "test")
    store.load_failed("ep", "challenger", "models:/m/2", "replica-a", "OSError: no such file")
    assert list(store.snapshot("ep").variants) == ["champion"]
    last = store.events("ep")[-1]
    assert last["kind"] == "load_failed" and "no such file" in last["detail"]["reason"]
