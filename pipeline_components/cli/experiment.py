"""`abx deploy|simulate|canary|decide|promote|rollback|cleanup|report|run`: the experiment stages.

Each command is one call into ``pipeline_components.experiment.tasks`` (the functions the Airflow
tasks call), for the experiment id in ``experiment.id`` (``--set experiment.id=...``). ``abx run``
runs the whole experiment without Airflow under a fresh experiment id.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from pipeline_components.cli._app import ParamsOpt, SetOpt, app, load, project_root
from pipeline_components.config import parse_overrides
from pipeline_components.fileio import write_json
from pipeline_components.stages import STAGES

UrlOpt = Annotated[list[str] | None, typer.Option(
    "--url", help="Endpoint URL; repeat it for several replicas (users are spread round-robin). "
                  "Default: the deployed one(s).")]


def _conf(params: Path, sets: list[str] | None, exp_id: str | None = None) -> dict[str, Any]:
    from pipeline_components.experiment.config import make_conf

    cfg = load(params, sets)
    return make_conf(params, exp_id or cfg.experiment.id, parse_overrides(sets or []),
                     root=project_root(), origin="--set")


def _stored(conf: dict[str, Any], name: str) -> dict[str, Any]:
    from pipeline_components.errors import ConfigError
    from pipeline_components.experiment.config import config_for
    from pipeline_components.experiment.state import read_state, state_path

    cfg = config_for(conf)
    got = read_state(cfg, name)
    if got is None:
        raise ConfigError(f"{state_path(cfg, name)} not found: run the earlier stage for "
                          f"experiment {cfg.experiment.id!r} first")
    return got


def _print(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


@app.command("deploy")
def deploy_cmd(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Start the canary router (champion + challenger) for experiment.id; print its address."""
    from pipeline_components.experiment import tasks

    _print(tasks.deploy(_conf(params, set_)))


@app.command("simulate")
def simulate_cmd(
    params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None, url: UrlOpt = None,
    offset: Annotated[int, typer.Option(help="First holdout row to replay.")] = 0,
    n: Annotated[int | None, typer.Option(help="Users to send (default simulator.max_requests)")]
    = None,
    out: Annotated[Path | None, typer.Option(help="Also write the result JSON here.")] = None,
    progress: Annotated[bool, typer.Option(help="Draw a progress bar.")] = True,
    allow_remote: Annotated[bool, typer.Option(help="Allow a non-loopback --url.")] = False,
    true_lift: Annotated[float | None, typer.Option(
        help="Draw rewards with this known absolute lift for every non-champion variant "
             "(simulator.true_lift; base rate simulator.base_rate) instead of scoring the "
             "served predictions.")] = None,
) -> None:
    """Replay holdout users against an endpoint over HTTP (an outside client), then post their
    outcomes as feedback (with the endpoint's client key)."""
    from pipeline_components.experiment.config import config_for
    from pipeline_components.experiment.simulate import simulate

    if true_lift is not None:
        set_ = [*(set_ or []), f"simulator.true_lift={true_lift}"]
    conf = _conf(params, set_)
    stored = {} if url else _stored(conf, "deployment")
    target = url or stored.get("urls") or [stored["url"]]
    res = simulate(config_for(conf), target, offset=offset, n=n, progress=progress,
                   allow_remote=allow_remote)
    if out is not None:
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(res, default=str))
        tmp.replace(out)  # atomic: a reader sees the whole result or nothing
    _print(res)


@app.command("canary")
def canary_cmd(
    params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None,
    deploy: Annotated[bool, typer.Option(help="Gate check + deploy first, clean up after "
                                         "(one self-contained stage, as `dvc repro` runs it).")]
    = False,
) -> None:
    """Ramp the challenger through canary.steps with simulated traffic; analyse after each step."""
    from pipeline_components.experiment import tasks
    from pipeline_components.experiment.run import canary_stage

    conf = _conf(params, set_)
    if deploy:
        _print(canary_stage(conf))
    else:
        _print(tasks.canary(conf, _stored(conf, "deployment")))


@app.command("decide")
def decide_cmd(
    params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None,
    apply: Annotated[bool, typer.Option(help="Also promote or roll back as decided.")] = False,
) -> None:
    """Record and print the final decision of the canary (promote or rollback, with reasons)."""
    from pipeline_components.experiment import tasks

    conf = _conf(params, set_)
    _require_experiment(conf)
    canary = _maybe(conf, "canary")
    if not canary.get("decision"):  # no canary ran (bootstrap or offline gate): nothing to do
        stored = _maybe(conf, "outcome") or _maybe(conf, "decision")
        if not stored:
            _stored(conf, "canary")  # the error names the file and the experiment id
        _print(stored)
        return
    decision = tasks.decide(conf, canary)
    _print(decision)
    if apply:
        dep = _maybe(conf, "deployment")
        act = tasks.promote if tasks.route_decision(decision) == "promote" else tasks.rollback
        live = dep.get("endpoint") or (dep.get("url") and _alive(conf))
        _print(act(conf, decision, dep if live else {}))


def _alive(conf: dict[str, Any]) -> bool:
    from pipeline_components.deploy import get_backend
    from pipeline_components.experiment.config import config_for

    cfg = config_for(conf)
    return bool(get_backend(cfg.serving.backend).find(cfg.experiment.id, cfg))


@app.command("promote")
def promote_cmd(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Move alias champion to the challenger; router 100% to it.

    Only on this experiment's stored promote decision, a passed gate and a version never
    rejected (else exit 11, nothing moves); under the model's database lock, compare-and-set.
    """
    from pipeline_components.experiment import tasks

    conf = _conf(params, set_)
    _require_experiment(conf)
    dep = _maybe(conf, "deployment")
    _print(tasks.promote(conf, _maybe(conf, "decision"), dep))


@app.command("rollback")
def rollback_cmd(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Reject the challenger (alias removed, version tagged); router back to the champion."""
    from pipeline_components.experiment import tasks

    conf = _conf(params, set_)
    _require_experiment(conf)
    _print(tasks.rollback(conf, _maybe(conf, "decision"), _maybe(conf, "deployment")))


@app.command("cleanup")
def cleanup_cmd(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Stop the experiment's routers and free their ports; keeps logs and results. Idempotent."""
    from pipeline_components.experiment import tasks

    _print(tasks.cleanup(_conf(params, set_)))


@app.command("report")
def report_cmd(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Write the HTML report and Markdown summary of experiment.id; log both to MLflow."""
    from pipeline_components.experiment import tasks

    out = tasks.report(_conf(params, set_))
    typer.echo(f"report: {out['html']}\nsummary: {out['markdown']}")


@app.command("run")
def run_cmd(
    params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None,
    experiment_id: Annotated[str | None, typer.Option(help="Default: a fresh cli-<time> id.")]
    = None,
) -> None:
    """The whole experiment without Airflow: data -> train -> canary -> decide -> report."""
    from pipeline_components.experiment.run import run_experiment

    exp_id = experiment_id or time.strftime("cli-%Y%m%dT%H%M%S", time.gmtime())
    out = run_experiment(_conf(params, set_, exp_id))
    before, after = out["champion_before"], out["champion_after"]
    typer.echo(f"decision: {out['action']}; champion {f'v{before}' if before else '(none)'} -> "
               f"v{after}\nreport: {out['html']}")


def _require_experiment(conf: dict[str, Any]) -> None:
    """ConfigError naming the id (and the ids the state root does know) when nothing is stored."""
    from pipeline_components.errors import ConfigError
    from pipeline_components.experiment.config import config_for

    cfg = config_for(conf)
    if cfg.experiment_dir.is_dir():
        return
    root = cfg.experiment_dir.parent
    known = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    have = ", ".join(known[-10:]) if known else "none"
    raise ConfigError(f"experiment id {cfg.experiment.id!r}: unknown, nothing stored under "
                      f"{root} (experiments there: {have}); check --set experiment.id")


def _maybe(conf: dict[str, Any], name: str) -> dict[str, Any]:
    from pipeline_components.experiment.config import config_for
    from pipeline_components.experiment.state import read_state

    return read_state(config_for(conf), name) or {}


RECEIPTS = {s.name: s.receipt for s in STAGES if s.receipt}


@app.command("receipt")
def receipt_cmd(
    stage: Annotated[str, typer.Argument(help=f"One of {sorted(RECEIPTS)}.")],
    params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None,
    out_dir: Annotated[Path, typer.Option(help="Where receipts go.")] = Path("runs"),
) -> None:
    """Copy a stage's stored result to runs/<experiment.id>/<stage>.json (a `dvc repro` output:
    the state folder itself is dvc-ignored)."""
    from pipeline_components.errors import ConfigError

    cfg = load(params, set_)
    if stage not in RECEIPTS:
        raise ConfigError(f"abx receipt: unknown stage {stage!r}; one of {sorted(RECEIPTS)}")
    files = sorted(cfg.experiment_dir.glob(RECEIPTS[stage]))
    if not files:
        raise ConfigError(f"{cfg.experiment_dir / RECEIPTS[stage]}: nothing stored for stage "
                          f"{stage!r} of experiment {cfg.experiment.id!r}")
    payload = {f.stem: json.loads(f.read_text()) for f in files}
    target = out_dir / cfg.experiment.id / f"{stage}.json"
    write_json(target, payload)
    typer.echo(f"receipt: {target}")
