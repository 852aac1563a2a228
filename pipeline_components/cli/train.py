"""`abx train`, `abx register`, `abx gate`: the train stage's commands (thin calls + progress).

Each prints its small JSON result on stdout (so shells and DVC can read it) and the human summary
on stderr.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from pipeline_components.cli._app import ParamsOpt, SetOpt, app, console, load
from pipeline_components.errors import AbxError


def _emit(payload: Any) -> None:
    print(json.dumps(payload, indent=2, sort_keys=True, default=str))


@app.command("train")
def train_cmd(
    params: ParamsOpt = "params.yaml",  # type: ignore[assignment]
    set_: SetOpt = None,
    family: Annotated[
        str | None, typer.Option("--family", "-f", help="Train one family (default: all).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", "-w", min=1, help="Worker processes per study.")
    ] = None,
) -> None:
    """Run one Optuna study per model family (trials in parallel processes), log to MLflow."""
    from pipeline_components import training
    from pipeline_components.tracking import configure_mlflow

    sets = list(set_ or []) + ([f"training.workers={workers}"] if workers else [])
    cfg = load(params, sets)
    names = [family] if family else list(cfg.training.families)
    for name in names:  # fail on config / tracking problems before drawing any progress bar
        training.search_space(cfg, name)
    configure_mlflow(cfg)
    with Progress("[bold]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=False) as bar:
        tasks = {f: bar.add_task(f, total=cfg.training.n_trials) for f in names}

        def on_progress(fam: str, done: int, total: int) -> None:
            bar.update(tasks[fam], completed=min(done, total), total=total)

        if family:
            results = [training.train_family(cfg, family, on_progress)]
        else:
            results = training.train_all(cfg, on_progress)
    for r in results:
        if r.get("failed"):
            console.print(f"[red]{r['family']}: failed:[/] {r['error']}", highlight=False)
            continue
        console.print(f"{r['family']}: best cv {r['metric']}={r['best_value']:.4f} "
                      f"(trial {r['best_trial']}), holdout roc_auc={r['holdout']['roc_auc']:.4f}")
    _emit(results)
    if all(r.get("failed") for r in results):
        raise AbxError("no model family finished training: "
                       + "; ".join(f"{r['family']}: {r['error']}" for r in results))


@app.command("register")
def register_cmd(params: ParamsOpt = "params.yaml", set_: SetOpt = None) -> None:  # type: ignore[assignment]
    """Register the best family's model (alias challenger; champion too on the first run)."""
    from pipeline_components import registry

    res = registry.register_best(load(params, set_))
    note = " (bootstrap: also champion)" if res["bootstrap"] else ""
    console.print(f"{res['model_name']} version {res['version']} ({res['family']}) "
                  f"is the challenger{note}")
    _emit(res)


@app.command("gate")
def gate_cmd(
    params: ParamsOpt = "params.yaml",  # type: ignore[assignment]
    set_: SetOpt = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit with code 10 when the gate does not pass.")
    ] = False,
) -> None:
    """Offline gate: does the challenger beat the champion on the holdout by the margin?"""
    from pipeline_components.gate import offline_gate

    res = offline_gate(load(params, set_))
    color = "green" if res["passed"] else "yellow"
    verdict = "passed" if res["passed"] else "not passed"
    console.print(f"[{color}]gate {verdict}:[/] {res['reason']}", highlight=False)
    _emit(res)
    if strict and not res["passed"]:
        raise typer.Exit(10)
