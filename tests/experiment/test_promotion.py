"""Promotion / rollback on a real MLflow registry (sqlite in tmp_path), and the alias lock."""

from __future__ import annotations

import multiprocessing as mp
import time
from typing import Any

import pytest

from pipeline_components.config import Config
from pipeline_components.errors import ExperimentLockedError
from pipeline_components.experiment.promotion import model_lock, promote, rollback


def _registry(cfg: Config, versions: int = 2) -> Any:
    """A registered model with ``versions`` versions; v1 is champion, the last is challenger."""
    from pipeline_components.tracking import configure_mlflow

    client = configure_mlflow(cfg)
    name = cfg.registry.model_name
    client.create_registered_model(name)
    for _ in range(versions):
        client.create_model_version(name, source=str(cfg.state_dir / "artifact"))
    client.set_registered_model_alias(name, "champion", "1")
    client.set_registered_model_alias(name, "challenger", str(versions))
    return client


def _alias(client: Any, cfg: Config, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(cfg.registry.model_name, alias).version)
    except Exception:
        return None


REASONS = [{"code": "EFFECT_POSITIVE", "message": "lift +0.1", "blocking": False}]


def test_promote_moves_champion_tags_old_one_and_is_idempotent(tmp_cfg: Config) -> None:
    client = _registry(tmp_cfg)
    out = promote(tmp_cfg, "2", expected_champion="1", reasons=REASONS)
    assert out == {"action": "promote", "changed": True, "version": "2",
                   "champion_before": "1", "champion_after": "2"}
    assert _alias(client, tmp_cfg, "champion") == "2"
    assert _alias(client, tmp_cfg, "challenger") is None
    old = client.get_model_version(tmp_cfg.registry.model_name, "1").tags
    assert "replaced by v2 in experiment t1" in old["abx.retired_reason"]
    assert "EFFECT_POSITIVE" in old["abx.retired_reason"] and old["abx.retired_at"]
    # an Airflow retry of the same task changes nothing
    again = promote(tmp_cfg, "2", expected_champion="1", reasons=REASONS)
    assert again["changed"] is False and _alias(client, tmp_cfg, "champion") == "2"


def test_promote_refuses_when_champion_moved_meanwhile(tmp_cfg: Config) -> None:
    client = _registry(tmp_cfg, versions=3)
    # another experiment promoted v3 after this one (challenger v2) was compared with v1
    client.set_registered_model_alias(tmp_cfg.registry.model_name, "champion", "3")
    with pytest.raises(ExperimentLockedError, match="moved from v1 to v3"):
        promote(tmp_cfg, "2", expected_champion="1")
    assert _alias(client, tmp_cfg, "champion") == "3"


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


def _hold_lock(cfg_json: str, ready: Any, release: Any) -> None:
    cfg = Config.model_validate_json(cfg_json)
    with model_lock(cfg, timeout_s=5):
        ready.set()
        release.wait(20)


def test_second_run_on_the_same_model_waits_then_fails_clearly(tmp_cfg: Config) -> None:
    ctx = mp.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(tmp_cfg.model_dump_json(), ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        with pytest.raises(ExperimentLockedError, match="is locked by experiment t1 pid"):
            with model_lock(tmp_cfg, timeout_s=0.3):
                pass
    finally:
        release.set()
        holder.join(20)
    # once released, the loser gets the lock
    with model_lock(tmp_cfg, timeout_s=5):
        pass


def test_concurrent_promotions_never_corrupt_aliases(tmp_cfg: Config) -> None:
    """Two experiments (challengers v2 and v3, both compared with champion v1) race to promote:
    exactly one wins; the other is refused by the check-and-set; aliases stay consistent."""
    client = _registry(tmp_cfg, versions=3)
    raw = tmp_cfg.model_dump(mode="json")
    raw["canary"]["lock_timeout_s"] = 60.0  # the loser waits for the lock, then sees the CAS fail
    cfg_json = Config.model_validate(raw).model_dump_json()
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        results = pool.starmap(_promote_in_child, [(cfg_json, "2"), (cfg_json, "3")])
    wins = [r for r in results if r.startswith("promoted")]
    assert len(wins) == 1, results
    assert any("moved from v1" in r for r in results), results
    assert _alias(client, tmp_cfg, "champion") == wins[0].split()[-1]


def _promote_in_child(cfg_json: str, version: str) -> str:
    cfg = Config.model_validate_json(cfg_json)
    time.sleep(0.01)
    try:
        promote(cfg, version, expected_champion="1")
        return f"promoted {version}"
    except ExperimentLockedError as exc:
        return str(exc)
