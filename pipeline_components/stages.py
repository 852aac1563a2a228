"""The experiment's graph, written once: its steps, and the stages ``dvc repro`` runs.

Kedro splits a pipeline into nodes (a function with named inputs) and the pipeline that orders
them; its runners and its Airflow exporter only walk that definition. The same split here:

- ``STEPS``: every step of one experiment, in order. A step is one function of
  ``experiment.tasks``, called with the run's conf and the results of the steps named in
  ``inputs``. The Airflow DAG makes one task per step and wires ``inputs``, ``after``, branches,
  the sensor and the teardown from it; ``abx run`` walks it (``experiment.run.run_steps``).
- ``STAGES``: what ``dvc repro`` runs. ``dvc repro`` needs files between stages, so its stages
  are coarser: each is one ``abx`` command covering some steps, with the code, the params.yaml
  keys and the upstream outputs it reads and the files it writes. ``dvc.yaml`` is generated from
  them (``abx dvc generate``) and a test fails when the committed file is stale.

Only the DAG's ``resolve`` task (trigger form -> conf) is not a step: ``abx run`` builds the same
conf from its command line. Cheap to import (the DAG file reads this at parse time): functions are
named here and looked up in ``experiment.tasks`` only when a step runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["task", "branch", "sensor", "setup", "teardown"]
TriggerRule = Literal["all_success", "none_failed_min_one_success"]


@dataclass(frozen=True)
class Step:
    """One step (an Airflow task): ``experiment.tasks.<func>(conf, *results of inputs)``.

    Kinds: ``branch`` is called with the inputs only and returns the name of the step that runs
    next (the other steps that come ``after`` it are skipped); ``sensor`` waits for something
    outside (Airflow calls ``poke`` until it returns a result, ``abx run`` calls ``func``, which
    waits); ``setup``/``teardown`` pair up through ``inputs``: the teardown runs whenever its
    setup ran, even after a failure. ``map_over`` runs the step once per item of that step's
    result, passed as ``map_arg``. ``asset``: the Airflow asset the step updates.
    """

    name: str
    func: str
    inputs: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    kind: Kind = "task"
    map_over: str | None = None
    map_arg: str = ""
    poke: str | None = None
    asset: str | None = None
    trigger_rule: TriggerRule = "all_success"

    @property
    def upstream(self) -> tuple[str, ...]:
        """Every step that has to be over before this one starts."""
        return self.inputs + self.after + ((self.map_over,) if self.map_over else ())


STEPS: tuple[Step, ...] = (
    Step("data", "data"),
    Step("validate", "validate", after=("data",)),
    Step("features", "features", after=("validate",), asset="data"),
    Step("families", "families", after=("features",)),
    Step("train", "train", map_over="families", map_arg="family"),
    Step("register", "register", inputs=("train",)),
    Step("gate", "gate", inputs=("register",)),
    Step("route_gate", "route_after_gate", inputs=("gate",), kind="branch"),
    Step("no_canary", "no_canary", inputs=("gate",), after=("route_gate",)),
    Step("deploy_canary", "deploy", after=("route_gate",), kind="setup"),
    Step("canary", "canary", inputs=("deploy_canary",), kind="sensor", poke="canary_poke"),
    Step("decide", "decide", inputs=("canary",)),
    Step("route_decision", "route_decision", inputs=("decide",), kind="branch"),
    Step("promote", "promote", inputs=("decide", "deploy_canary"), after=("route_decision",),
         asset="champion"),
    Step("rollback", "rollback", inputs=("decide", "deploy_canary"), after=("route_decision",)),
    Step("cleanup", "cleanup", inputs=("deploy_canary",), after=("promote", "rollback"),
         kind="teardown"),
    Step("report", "report", after=("promote", "rollback", "no_canary", "cleanup"),
         trigger_rule="none_failed_min_one_success"),
)


@dataclass(frozen=True)
class Out:
    """A file or folder a stage writes; ``cache=False``: a small receipt DVC tracks, not stores."""

    path: str
    cache: bool = True


@dataclass(frozen=True)
class Stage:
    """One ``dvc repro`` stage: ``cmd`` runs ``steps``.

    ``needs``: the stages whose outputs it reads (they become its deps, after ``code``).
    ``receipt``: the stored results (a glob under the experiment folder) that ``abx receipt``
    copies to ``runs/<experiment.id>/<stage>.json``, the stage's output, because the state folder
    itself is dvc-ignored.
    """

    name: str
    desc: str
    cmd: str
    steps: tuple[str, ...]
    needs: tuple[str, ...] = ()
    code: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    outs: tuple[Out, ...] = ()
    receipt: str | None = None

    @property
    def command(self) -> str:
        """The shell command in dvc.yaml: ``cmd``, then the receipt when the stage has one."""
        return f"{self.cmd} && abx receipt {self.name}" if self.receipt else self.cmd

    @property
    def outputs(self) -> tuple[Out, ...]:
        receipt = (Out(f"runs/${{experiment.id}}/{self.name}.json", cache=False),)
        return self.outs + (receipt if self.receipt else ())


_SCHEMA = ("data.id_column", "data.target_column", "data.covariate_column",
           "data.numeric_features", "data.categorical_features")

STAGES: tuple[Stage, ...] = (
    Stage("data", "Generate the synthetic users (or ingest data.path) into the raw Parquet table",
          "abx data", ("data",), code=("pipeline_components/data.py",),
          params=("experiment.seed", "data"), outs=(Out("${data.raw_path}"),)),
    Stage("validate", "Great Expectations suite on the raw table; fails the pipeline on bad data",
          "abx validate --path ${data.raw_path}", ("validate",), needs=("data",),
          code=("pipeline_components/validate.py", "pipeline_components/data.py"),
          params=(*_SCHEMA, "validation"),
          outs=(Out("${validation.report_path}", cache=False),)),
    Stage("features", "Seeded train / validation / holdout split with the data version in "
          "meta.json", "abx features", ("features",), needs=("data", "validate"),
          code=("pipeline_components/features.py", "pipeline_components/data.py"),
          params=("experiment.seed", "data.source", *_SCHEMA, "data.synthetic.drift",
                  "features"),
          outs=(Out("${features.out_dir}"),)),
    Stage("train", "One Optuna study per model family (an MLflow run per trial), best model "
          "refit and logged", "abx train", ("families", "train"), needs=("features",),
          code=("pipeline_components/training",),
          params=("experiment.id", "experiment.seed", "training", "tracking"),
          receipt="training/*.json"),
    Stage("register", "Register the winner across families (alias challenger; the first ever "
          "also champion)", "abx register", ("register",), needs=("train",),
          code=("pipeline_components/registry.py",), params=("registry.model_name",),
          receipt="registry.json"),
    Stage("gate", "Offline gate, challenger vs champion on the holdout; a failing gate means no "
          "canary", "abx gate", ("gate",), needs=("register",),
          code=("pipeline_components/gate.py",), params=("registry",),
          receipt="gate.json"),
    Stage("canary", "Attach to the endpoint, ramp the challenger, analyse each look, decide, "
          "detach (no promotion yet)", "abx canary --deploy",
          ("route_gate", "no_canary", "deploy_canary", "canary", "decide", "cleanup"),
          needs=("gate",), code=("pipeline_components/experiment", "pipeline_components/serving",
                                 "pipeline_components/analysis"),
          params=("serving", "canary", "simulator", "analysis"), receipt="run/canary.json"),
    Stage("decide", "Final decision, then promote (alias champion moves) or roll back "
          "(challenger rejected)", "abx decide --apply",
          ("route_decision", "promote", "rollback"), needs=("canary",),
          receipt="run/decision.json"),
    Stage("report", "Self-contained HTML report + Markdown summary, logged to MLflow",
          "abx report", ("report",), needs=("decide",),
          code=("pipeline_components/experiment/report.py",), receipt="run/report.json"),
)


def step(name: str) -> Step:
    """The step called ``name`` (KeyError names the known ones)."""
    for s in STEPS:
        if s.name == name:
            return s
    raise KeyError(f"no step {name!r}; steps: {[s.name for s in STEPS]}")


def stage(name: str) -> Stage:
    """The ``dvc repro`` stage called ``name`` (KeyError names the known ones)."""
    for s in STAGES:
        if s.name == name:
            return s
    raise KeyError(f"no stage {name!r}; stages: {[s.name for s in STAGES]}")


DVC_HEADER = """\
# Generated from pipeline_components/stages.py by `abx dvc generate`: edit the stages there, not
# here (tests/test_stages.py fails when this file is stale).
# Each stage is one `abx` subcommand (the same component functions Airflow and the CLI call).
# Paths come from params.yaml (${...}); `params:` lists the keys a stage reads, so changing any
# of them reruns exactly the stages that depend on it.
# Results are keyed by experiment.id (default "local"): set a fresh id per experiment (edit
# params.yaml, or `dvc exp run --set-param experiment.id=...`). The state folder (.abx)
# is dvc-ignored, so from train on each stage leaves a small JSON receipt under
# runs/<experiment.id>/ (`abx receipt STAGE`) that links the stages for `dvc repro`.
"""


def dvc_yaml(stages: tuple[Stage, ...] = STAGES) -> str:
    """The text of dvc.yaml for ``stages``: deps are a stage's code, then its needs' outputs."""
    by_name = {s.name: s for s in stages}
    lines = [DVC_HEADER.rstrip("\n"), "stages:"]
    for s in stages:
        deps = [*s.code, *(o.path for n in s.needs for o in by_name[n].outputs)]
        lines += ["", f"  {s.name}:", f"    desc: {_scalar(s.desc)}",
                  f"    cmd: {_scalar(s.command)}"]
        for key, items in (("deps", deps), ("params", list(s.params))):
            if items:
                lines += [f"    {key}:", *(f"      - {_scalar(i)}" for i in items)]
        if s.outputs:
            lines.append("    outs:")
        for o in s.outputs:
            lines += ([f"      - {_scalar(o.path)}"] if o.cache else
                      [f"      - {_scalar(o.path)}:", "          cache: false"])
    return "\n".join(lines) + "\n"


def _scalar(text: str) -> str:
    """``text`` as a YAML scalar: plain when YAML reads it back unchanged, else double-quoted."""
    import json

    import yaml

    plain = ":" not in text and "#" not in text and text[:1] not in "\"'[]{}&*!|>%@`"
    return text if plain and yaml.safe_load(text) == text else json.dumps(text)
