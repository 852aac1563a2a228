"""The stage definition: dvc.yaml is generated from it, and ``abx run`` walks it like Airflow."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline_components.cli import main
from pipeline_components.experiment import tasks
from pipeline_components.experiment.run import run_steps
from pipeline_components.stages import STAGES, STEPS, dvc_yaml, stage

REPO = Path(__file__).resolve().parents[1]


def test_committed_dvc_yaml_is_generated_from_the_stages() -> None:
    # fails when stages.py changed without `abx dvc generate` (or dvc.yaml was edited by hand)
    assert (REPO / "dvc.yaml").read_text() == dvc_yaml()


def _abx(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["abx", *args])
    try:
        main()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_abx_dvc_generate_check_fails_on_a_stale_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "dvc.yaml"
    out.write_text(dvc_yaml().replace("abx features", "abx features --old"))
    assert _abx(monkeypatch, "dvc", "generate", "--out", str(out), "--check") == 1
    assert "--old" in out.read_text()  # --check writes nothing
    assert _abx(monkeypatch, "dvc", "generate", "--out", str(out)) == 0
    assert out.read_text() == dvc_yaml()
    assert _abx(monkeypatch, "dvc", "generate", "--out", str(out), "--check") == 0


def test_generated_stages_read_their_upstream_outputs() -> None:
    got = yaml.safe_load(dvc_yaml())["stages"]
    assert list(got) == [s.name for s in STAGES]
    assert got["features"]["deps"] == ["pipeline_components/features.py",
                                       "pipeline_components/data.py", "${data.raw_path}",
                                       "${validation.report_path}"]
    assert got["gate"]["cmd"] == "abx gate && abx receipt gate"
    assert got["gate"]["outs"] == [{"runs/${experiment.id}/gate.json": {"cache": False}}]
    assert got["canary"]["deps"][-1] == "runs/${experiment.id}/gate.json"


def test_steps_are_ordered_and_callable() -> None:
    names = [s.name for s in STEPS]
    assert len(set(names)) == len(names)
    for i, st in enumerate(STEPS):
        assert set(st.upstream) <= set(names[:i]), st.name  # walkable in order
        assert callable(getattr(tasks, st.func)) and callable(getattr(tasks, st.poke or st.func))


def test_every_step_belongs_to_one_dvc_stage() -> None:
    # in order, except that `dvc repro` detaches (cleanup) in the canary stage, before the
    # decide stage promotes or rolls back: stages exchange files, so nothing stays attached
    covered = [n for s in STAGES for n in s.steps]
    names = [s.name for s in STEPS]
    assert [n for n in covered if n != "cleanup"] == [n for n in names if n != "cleanup"]
    assert sorted(covered) == sorted(names)
    for s in STAGES:
        assert all(STAGES.index(stage(n)) < STAGES.index(s) for n in s.needs), s.name


class Recorder:
    """Stand-ins for ``experiment.tasks``: record the calls, answer like the real branches."""

    def __init__(self, *, passed: bool, action: str = "promote", fail: str = "") -> None:
        self.calls: list[str] = []
        self.passed, self.action, self.fail = passed, action, fail

    def __getattr__(self, name: str) -> Any:
        def fn(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name + (f"[{kwargs['family']}]" if "family" in kwargs else ""))
            if name == self.fail:
                raise RuntimeError(name)
            if name == "route_after_gate":
                return getattr(tasks, name)({"passed": self.passed})
            if name == "route_decision":
                return getattr(tasks, name)({"action": self.action})
            return ["a", "b"] if name == "families" else {"from": name}

        return fn


def test_run_walks_the_steps_with_airflows_rules() -> None:
    # bootstrap / gate said no: no deploy, no teardown (its setup was skipped), then the report
    rec = Recorder(passed=False)
    run_steps({}, funcs=rec)
    assert rec.calls == ["data", "validate", "features", "families", "train[a]", "train[b]",
                         "register", "gate", "route_after_gate", "no_canary", "report"]
    # a canary that rolls back: promote skipped, cleanup after the rollback, then the report
    rec = Recorder(passed=True, action="rollback")
    done = run_steps({}, funcs=rec)
    assert rec.calls[-7:] == ["deploy", "canary", "decide", "route_decision", "rollback",
                              "cleanup", "report"]
    assert "promote" not in done and "no_canary" not in done


def test_a_failed_step_still_runs_the_teardown_and_nothing_after() -> None:
    rec = Recorder(passed=True, fail="canary")
    with pytest.raises(RuntimeError, match="canary"):
        run_steps({}, funcs=rec)
    assert rec.calls[-3:] == ["deploy", "canary", "cleanup"]
    rec = Recorder(passed=True, fail="features")  # before the setup: no teardown
    with pytest.raises(RuntimeError, match="features"):
        run_steps({}, funcs=rec)
    assert rec.calls[-1] == "features"


def test_every_params_key_and_path_variable_is_in_params_yaml() -> None:
    # a typo here would only show when `dvc repro` starts ("parameters missing")
    params = yaml.safe_load((REPO / "params.yaml").read_text())

    def has(dotted: str) -> bool:
        node: Any = params
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    text = dvc_yaml().split("\nstages:", 1)[1]  # the stages, not the header comment
    keys = {k for s in STAGES for k in s.params} | set(re.findall(r"\$\{([\w.]+)\}", text))
    assert sorted(k for k in keys if not has(k)) == []
    assert has("data.raw_path") and not has("data.raw_pth")  # the lookup itself can fail
