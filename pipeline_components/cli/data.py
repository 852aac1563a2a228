"""`abx data`, `abx validate`, `abx features`: the data stages, each one call into a component."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from pipeline_components.cli._app import ParamsOpt, SetOpt, app, console, load

PathOpt = Annotated[
    Path | None,
    typer.Option(
        "--path",
        help="File to validate (default: data.path when data.source=file, else data.raw_path).",
    ),
]


@contextmanager
def _step(description: str) -> Iterator[None]:
    """A transient spinner with elapsed time while a step runs (quiet when not a terminal)."""
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    quiet = not console.is_terminal  # logs and pipes get the summary line only
    with Progress(*columns, console=console, transient=True, disable=quiet) as progress:
        progress.add_task(description, total=None)
        yield


@app.command("data")
def data_cmd(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Generate synthetic users or ingest data.path into data.raw_path (Parquet)."""
    from pipeline_components.data import run_data

    cfg = load(params, set_)
    with _step(f"data: {cfg.data.source} -> {cfg.data.raw_path}"):
        out = run_data(cfg)
    typer.echo(
        f"data: wrote {out['path']} ({out['rows']} rows, source {out['source']}, "
        f"version {str(out['data_version'])[:12]})"
    )


@app.command("validate")
def validate_cmd(
    params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None, path: PathOpt = None
) -> None:
    """Check the data against its Great Expectations suite; non-zero exit on failure."""
    from pipeline_components.validate import run_validate

    cfg = load(params, set_)
    with _step("validate: running the Great Expectations suite"):
        out = run_validate(cfg, path)
    typer.echo(
        f"validate: {out['path']} passed {out['evaluated']} expectations "
        f"({out['rows']} rows); result in {out['report_path']}"
    )


@app.command("features")
def features_cmd(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Split data.raw_path into train / validation / holdout under features.out_dir."""
    from pipeline_components.features import run_features

    cfg = load(params, set_)
    with _step(f"features: splitting {cfg.data.raw_path}"):
        out = run_features(cfg)
    rows = ", ".join(f"{k} {v}" for k, v in out["rows"].items())
    typer.echo(
        f"features: wrote {out['out_dir']} ({rows}); data version "
        f"{out['data_version']['sha256'][:12]}"
    )
