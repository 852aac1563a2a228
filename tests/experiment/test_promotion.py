"""Promotion / rollback on a real MLflow registry (sqlite in tmp_path) and the database lock.

The real-server faults (outage, 503, crash between tag and alias, concurrent promoters) are in
test_champion_safety.py; here the rules themselves, fast.
"""

from __future__ import annotations

import multiprocessing as mp
import re
from typing import Any

import pytest

from pipeline_components.config import Config
from pipeline_components.errors import (
    AliasConflictError,
    ExperimentLockedError,
    PromotionRefusedError,
)
from pipeline_components.experiment.promotion import promote, refusals, rollback
from pipeline_components.experiment.state import write_state
from pipeline_components.locks import db_lock

REASONS = [{"code": "EFFECT_POSITIVE", "message": "lift +0.1", "blocking": False}]


def _registry(cfg: Config, versions: int = 2, gate: str = "true") -> Any:
    """v1 champion; the last version is experiment t1's challenger, gated against v1."""
    from pipeline_components.tracking import configure_mlflow

    client = configure_mlflow(cfg)
    name = cfg.registry.model_name
    client.create_registered_model(name)
    for i in range(1, versions + 1):
        client.create_model_version(name, source=str(cfg.state_dir / "artifact"),
                                    tags={"experiment_id": f"e{i}"})
    last = str(versions)
    client.set_model_version_tag(name, last, "experiment_id", cfg.experiment.id)
    client.set_model_version_tag(name, last, "gate_passed", gate)
    client.set_model_version_tag(name, last, "gate_champion_version", "1")
    client.set_registered_model_alias(name, "champion", "1")
    client.set_registered_model_alias(name, "challenger", last)
    return client


def _alias(client: Any, cfg: Config, alias: str) -> str | None:
    aliases = client.get_registered_model(cfg.registry.model_name).aliases
    return str(aliases[alias]) if alias in aliases else None


def _decide(cfg: Config, action: str = "promote") -> None:
    write_state(cfg, "decision", {"action": action, "reasons": REASONS})


def test_promote_moves_champion_tags_first_and_is_idempotent(tmp_cfg: Config) -> None:
    client = _registry(tmp_cfg)
    _decide(tmp_cfg)
    out = promote(tmp_cfg)
    assert out.to_dict() == {"action": "promote", "changed": True, "version": "2",
                             "champion_before": "1", "champion_after": "2",
                             "experiment_id": "t1"}
    assert _alias(client, tmp_cfg, "champion") == "2"
    assert _alias(client, tmp_cfg, "challenger") is None
    name = tmp_cfg.registry.model_name
    old = client.get_model_version(name, "1").tags
    assert "replaced by v2 in experiment t1" in old["abx.retired_reason"]
    assert "EFFECT_POSITIVE" in old["abx.retired_reason"] and old["abx.retired_at"]
    new = client.get_model_version(name, "2").tags
    assert (new["abx.decision"], new["abx.promoted_by"]) == ("promote", "t1")
    # an Airflow retry of the same task changes nothing (same tags, same timestamps)
    again = promote(tmp_cfg)
    assert again.changed is False and _alias(client, tmp_cfg, "champion") == "2"
    assert client.get_model_version(name, "2").tags == new


@pytest.mark.parametrize(("action", "gate", "rejected", "expect"), [
    (None, "true", False, "has no stored decision"),
    ("rollback", "true", False, "stored decision of experiment 't1' is 'rollback'"),
    ("promote", "false", False, "did not pass the offline gate"),
    ("promote", "true", True, "was rejected (rolled back)"),
])
def test_promote_is_refused_unless_earned(tmp_cfg: Config, action: str | None, gate: str,
                                          rejected: bool, expect: str) -> None:
    client = _registry(tmp_cfg, gate=gate)
    if action:
        _decide(tmp_cfg, action)
    if rejected:
        client.set_model_version_tag(tmp_cfg.registry.model_name, "2", "abx.rejected", "true")
    with pytest.raises(PromotionRefusedError, match=re.escape(expect)) as err:
        promote(tmp_cfg)
    assert err.value.exit_code == 11 and "The champion stays v1" in str(err.value)
    assert _alias(client, tmp_cfg, "champion") == "1"
    assert "abx.promoted_by" not in client.get_model_version(
        tmp_cfg.registry.model_name, "2").tags


def test_refusals_name_every_failed_condition() -> None:
    got = refusals({"action": "rollback", "reasons": [["BREAKER", "errors"]]},
                   {"gate_passed": "false", "abx.rejected": "true"}, "3", "e9")
    assert len(got) == 3 and "BREAKER: errors" in got[0]
    assert refusals({"action": "promote"}, {"gate_passed": "true",
                                            "gate_champion_version": "1"}, "3", "e9") == []


def test_promote_refuses_when_champion_moved_meanwhile(tmp_cfg: Config) -> None:
    client = _registry(tmp_cfg, versions=3)
    _decide(tmp_cfg)
    # another experiment promoted v2 after this one (challenger v3) was compared with v1
    client.set_registered_model_alias(tmp_cfg.registry.model_name, "champion", "2")
    with pytest.raises(AliasConflictError, match="moved from v1 to v2"):
        promote(tmp_cfg)
    assert _alias(client, tmp_cfg, "champion") == "2"


def test_rollback_rejects_challenger_and_keeps_champion(tmp_cfg: Config) -> None:
    client = _registry(tmp_cfg)
    reasons = [{"code": "BREAKER", "message": "error rate 1.0", "blocking": True}]
    out = rollback(tmp_cfg, "2", reasons=reasons)
    assert out["changed"] is True and out["champion"] == "1"
    assert _alias(client, tmp_cfg, "champion") == "1"
    assert _alias(client, tmp_cfg, "challenger") is None
    tags = client.get_model_version(tmp_cfg.registry.model_name, "2").tags
    assert tags["abx.rejected"] == "true" and "BREAKER: error rate 1.0" in tags[
        "abx.rejected_reasons"]
    assert rollback(tmp_cfg, "2", reasons=reasons)["changed"] is False  # idempotent
    _decide(tmp_cfg)  # even a (forged) promote decision cannot bring it back
    with pytest.raises(PromotionRefusedError, match="rejected"):
        promote(tmp_cfg)


def _hold_lock(url: str, ready: Any, release: Any) -> None:
    with db_lock(url, "alias:m", timeout_s=5, owner="experiment holder"):
        ready.set()
        release.wait(20)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_lock_is_exclusive_across_processes(backend: str, tmp_cfg: Config,
                                            pg_url: Any) -> None:
    url = pg_url() if backend == "postgresql" else tmp_cfg.lock_url
    ctx = mp.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(url, ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        # PostgreSQL names the holder (its application_name); SQLite cannot tell
        who = "abx experiment holder" if backend == "postgresql" else "another process"
        with pytest.raises(ExperimentLockedError, match=f"'alias:m' in .* is held by {who}"):
            with db_lock(url, "alias:m", timeout_s=0.3):
                pass
        if backend == "postgresql":  # one advisory lock per name; SQLite locks the database
            with db_lock(url, "alias:other", timeout_s=0.3):
                pass
    finally:
        release.set()
        holder.join(20)
    with db_lock(url, "alias:m", timeout_s=5):  # once released, the next one gets it
        pass


def test_lock_is_released_when_its_holder_is_killed(tmp_cfg: Config, pg_url: Any) -> None:
    ctx = mp.get_context("spawn")
    for url in (tmp_cfg.lock_url, pg_url()):
        ready, release = ctx.Event(), ctx.Event()
        holder = ctx.Process(target=_hold_lock, args=(url, ready, release))
        holder.start()
        assert ready.wait(60)
        holder.kill()  # SIGKILL: no finally block runs
        holder.join(20)
        with db_lock(url, "alias:m", timeout_s=10):
            pass
