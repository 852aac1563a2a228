"""The champion moves only on a promote decision: against a real ``mlflow server`` process.

One server (and one fault proxy process in front of it) per module; every test uses its own
registered model name, so tests do not see each other's aliases. Faults are real: the server
process stopped mid-register, the proxy answering 503 or hanging mid-operation, a promoter process
SIGKILLed between its tags and its alias move, two promoter processes racing on one lock database.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from pipeline_components import data, features, validate
from pipeline_components.config import Config, load_config
from pipeline_components.errors import RegistryUnavailableError
from pipeline_components.experiment.promotion import promote, rollback
from pipeline_components.experiment.state import write_state
from pipeline_components.registry import register_best
from pipeline_components.registry_testing import FaultProxy, MlflowServer, promoter
from pipeline_components.training import train_family

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
MakeCfg = Callable[..., Config]
# These versions are promoted, never loaded: the server only accepts non-local sources.
NEVER_READ = "s3://abx-never-read/model"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory,
          mlflow_db_template: Path) -> Iterator[dict[str, Any]]:
    """Real data + features (tiny), a real mlflow server, a fault proxy, one trained model."""
    root = tmp_path_factory.mktemp("champion-safety")
    server = MlflowServer(root / "mlflow", template=mlflow_db_template).start()
    proxy: FaultProxy | None = None
    try:
        proxy = FaultProxy(server.url, root)
        ov = _overrides(root, proxy.url)
        cfg = load_config(REPO / "params.yaml", {**ov, "experiment.state_dir": str(root / "s"),
                                                 "experiment.id": "trained"})
        data.run_data(cfg)
        validate.run_validate(cfg)  # features refuse unvalidated data
        features.run_features(cfg)
        trained = train_family(cfg, "logreg")
        yield {"server": server, "proxy": proxy, "ov": ov, "trained": trained,
               "direct": MlflowClient(server.url, registry_uri=server.url)}
    finally:  # the processes go away whatever failed
        if proxy is not None:
            proxy.stop()
        server.stop()


def _overrides(root: Path, tracking_uri: str) -> dict[str, Any]:
    return {
        "data.raw_path": str(root / "raw.parquet"), "features.out_dir": str(root / "features"),
        "validation.report_path": str(root / "validation.json"),
        "data.synthetic.n_users": 600, "tracking.tracking_uri": tracking_uri,
        "tracking.experiment_name": "champion-safety",  # artifacts under the server's root
        "training.families": ["logreg"], "training.n_trials": 1, "training.cv_folds": 2,
        "training.workers": 1, "training.pruning": False,
        # fail fast in tests: 3 attempts, 50 ms first backoff, 2 s per request
        "registry.retry_attempts": 3, "registry.retry_wait_s": 0.05,
        "registry.request_timeout_s": 2, "canary.lock_timeout_s": 60.0,
    }


@pytest.fixture()
def make_cfg(world: dict[str, Any], tmp_path: Path) -> MakeCfg:
    world["proxy"].set("pass")
    model = f"m-{uuid.uuid4().hex[:12]}"  # one registered model per test

    def make(eid: str, **extra: Any) -> Config:
        return load_config(REPO / "params.yaml", {
            **world["ov"], "experiment.state_dir": str(tmp_path / "state"),
            "experiment.id": eid, "registry.model_name": model, **extra})

    return make


def _result(world: dict[str, Any], eid: str) -> list[dict[str, Any]]:
    """The trained winner, as this experiment's training result (the registry only needs its
    model URI and lineage fields)."""
    return [{**world["trained"], "experiment_id": eid}]


def _aliases(world: dict[str, Any], cfg: Config) -> dict[str, str]:
    """Read straight from the server, around the proxy."""
    model = world["direct"].get_registered_model(cfg.registry.model_name)
    return {k: str(v) for k, v in model.aliases.items()}


def _versions(world: dict[str, Any], cfg: Config) -> int:
    found = world["direct"].search_model_versions(f"name = '{cfg.registry.model_name}'")
    return len(found)


def _ready_for_promotion(world: dict[str, Any], cfg: Config, versions: int) -> None:
    """v1 champion; versions 2..n gated (passed) against v1, each with a promote decision."""
    client, name = world["direct"], cfg.registry.model_name
    client.create_registered_model(name)
    for i in range(1, versions + 1):
        client.create_model_version(name, source=NEVER_READ, tags={
            "experiment_id": f"e{i}", "gate_passed": "true", "gate_champion_version": "1"})
        write_state(cfg.model_copy(update={"experiment": cfg.experiment.model_copy(
            update={"id": f"e{i}"})}), "decision", {"action": "promote", "reasons": ["test"]})
    client.set_registered_model_alias(name, "champion", "1")


def test_an_outage_is_never_read_as_no_model(world: dict[str, Any], make_cfg: MakeCfg) -> None:
    # The registry answers 503 to "does the model exist?": no bootstrap on an error.
    cfg = make_cfg("boot")
    world["proxy"].set("503", only="registered-models/get")
    with pytest.raises(RegistryUnavailableError, match="Retryable"):
        register_best(cfg, _result(world, "boot"))
    assert _versions(world, cfg) == 0
    world["proxy"].set("pass")
    res = register_best(cfg, _result(world, "boot"))  # the registry says "not found": bootstrap
    assert (res["bootstrap"], res["champion_version"]) == (True, "1")
    assert _aliases(world, cfg) == {"champion": "1", "challenger": "1"}


def test_server_stopped_mid_register_keeps_the_champion(
    world: dict[str, Any], make_cfg: MakeCfg, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_best(make_cfg("boot"), _result(world, "boot"))
    cfg = make_cfg("c1")
    original = MlflowClient.set_registered_model_alias

    def stop_then_call(self: MlflowClient, *args: Any) -> None:
        world["server"].stop()  # the real server process goes away after the version exists
        original(self, *args)

    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", stop_then_call)
    t0 = time.monotonic()
    with pytest.raises(RegistryUnavailableError, match="unavailable while setting alias"):
        register_best(cfg, _result(world, "c1"))
    assert time.monotonic() - t0 < 60  # bounded, not MLflow's minutes of retries
    monkeypatch.undo()
    world["server"].start()
    assert _aliases(world, cfg) == {"champion": "1", "challenger": "1"}
    res = register_best(cfg, _result(world, "c1"))  # the Airflow retry finishes the job
    assert (res["version"], res["reused"], res["bootstrap"]) == ("2", True, False)
    assert _aliases(world, cfg) == {"champion": "1", "challenger": "2"}


def test_503_mid_register_then_rerun_completes(world: dict[str, Any], make_cfg: MakeCfg) -> None:
    register_best(make_cfg("boot"), _result(world, "boot"))
    cfg = make_cfg("c1")
    world["proxy"].set("503", after="model-versions/create")  # the version exists, then 503s
    with pytest.raises(RegistryUnavailableError):
        register_best(cfg, _result(world, "c1"))
    assert world["proxy"].stats()["faulted"] >= 3
    assert _aliases(world, cfg)["champion"] == "1"
    world["proxy"].set("pass")
    res = register_best(cfg, _result(world, "c1"))
    assert (res["version"], res["reused"]) == ("2", True) and _versions(world, cfg) == 2
    assert _aliases(world, cfg) == {"champion": "1", "challenger": "2"}


def test_registry_hanging_mid_promote_fails_cleanly(world: dict[str, Any],
                                                    make_cfg: MakeCfg) -> None:
    cfg = make_cfg("e2")
    _ready_for_promotion(world, cfg, versions=2)
    world["proxy"].set("hang", after="model-versions/set-tag")  # tags go out, then timeouts
    with pytest.raises(RegistryUnavailableError, match="unavailable while"):
        promote(cfg)
    world["proxy"].set("pass")
    assert _aliases(world, cfg) == {"champion": "1"}
    assert promote(cfg).changed and _aliases(world, cfg) == {"champion": "2"}


def test_abx_promote_on_a_rolled_back_model_is_refused(world: dict[str, Any],
                                                       make_cfg: MakeCfg) -> None:
    cfg = make_cfg("e2")
    _ready_for_promotion(world, cfg, versions=2)
    rollback(cfg, "2", reasons=[{"code": "BREAKER", "message": "errors", "blocking": True}])
    abx = Path(sys.executable).parent / "abx"
    out = subprocess.run([str(abx), "promote", *_args(cfg, world)], capture_output=True,
                         text=True, timeout=180)
    assert out.returncode == 11, out.stderr
    assert "rejected (rolled back) by experiment e2" in " ".join(out.stderr.split())
    assert _aliases(world, cfg) == {"champion": "1"}


def _args(cfg: Config, world: dict[str, Any], **extra: Any) -> list[str]:
    ov = {**world["ov"], "experiment.state_dir": cfg.state_dir,
          "experiment.id": cfg.experiment.id, "registry.model_name": cfg.registry.model_name,
          **extra}
    sets = [x for k, v in ov.items()
            for x in ("--set", f"{k}={json.dumps(v) if isinstance(v, list) else v}")]
    return ["--params", str(REPO / "params.yaml"), *sets]


def test_crash_between_tags_and_alias_then_rerun(world: dict[str, Any],
                                                 make_cfg: MakeCfg) -> None:
    cfg = make_cfg("e2")
    _ready_for_promotion(world, cfg, versions=2)
    world["direct"].set_registered_model_alias(cfg.registry.model_name, "challenger", "2")
    proc = promoter(_args(cfg, world), env={"ABX_TEST_CRASH_AT": "alias:champion"})
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == -9, err  # SIGKILL right before the alias move
    tags = world["direct"].get_model_version(cfg.registry.model_name, "2").tags
    assert tags["abx.promoted_by"] == "e2" and tags["abx.decision"] == "promote"
    assert _aliases(world, cfg) == {"champion": "1", "challenger": "2"}  # lineage, no alias
    done = promote(cfg)  # the retry: the lock was released with the dead process
    assert (done.changed, done.champion_before) == (True, "1")
    assert _aliases(world, cfg) == {"champion": "2"}
    assert promote(cfg).changed is False


@pytest.mark.parametrize("lock", ["sqlite", "postgresql"])
def test_two_concurrent_promoters_move_the_alias_once(world: dict[str, Any], make_cfg: MakeCfg,
                                                      pg_url: Any, tmp_path: Path,
                                                      lock: str) -> None:
    extra = {"registry.lock_url": pg_url()} if lock == "postgresql" else {}
    cfg = make_cfg("e2", **extra)
    _ready_for_promotion(world, cfg, versions=3)  # e2 (v2) and e3 (v3), both gated vs v1
    go = tmp_path / "go"
    procs = [promoter(_args(make_cfg(eid, **extra), world), env={"ABX_TEST_GO_FILE": str(go)})
             for eid in ("e2", "e3")]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("go.ready.*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    go.touch()
    outs = [(p.wait(180), p.communicate()[0]) for p in procs]
    wins = [json.loads(o) for code, o in outs if code == 0]
    lost = [json.loads(o) for code, o in outs if code != 0]
    assert len(wins) == 1 and len(lost) == 1, outs
    assert lost[0]["error"] == "AliasConflictError" and "moved from v1" in lost[0]["message"]
    assert _aliases(world, cfg)["champion"] == wins[0]["version"]
    loser = "3" if wins[0]["version"] == "2" else "2"
    tags = world["direct"].get_model_version(cfg.registry.model_name, loser).tags
    assert "abx.promoted_by" not in tags  # the loser wrote nothing
