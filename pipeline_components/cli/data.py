"""`abx data`, `abx validate`, `abx features`: the data stages, each one call into a component."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from pipeline_components.cli._app import ParamsOpt, SetOpt, app, console, load, project_root

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


@app.command("init")
def init_cmd(
    data: Annotated[Path, typer.Option("--data", help="Your CSV/Parquet table.")],
    id_column: Annotated[str, typer.Option("--id", help="Unit id column (unique per row).")],
    target: Annotated[str, typer.Option("--target", help="Binary 0/1 label column.")],
    covariate: Annotated[str | None, typer.Option(
        help="Pre-experiment numeric value per unit, for CUPED (default: none).")] = None,
    max_categories: Annotated[int, typer.Option(
        min=1, help="Levels kept per text column; the long tail goes to 'other'.")] = 20,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Infer the schema of a file and write it into params.yaml (review, then commit it)."""
    from rich.table import Table

    from pipeline_components.data import read_table
    from pipeline_components.params_file import write_schema
    from pipeline_components.schema import infer_schema

    schema = infer_schema(read_table(data), id_column, target, covariate_column=covariate,
                          max_categories=max_categories)
    root, full = project_root().resolve(), data.resolve()
    shown = str(full.relative_to(root)) if full.is_relative_to(root) else str(full)
    written = write_schema(params, schema, shown)
    table = Table("column", "role", "type", "null", "rule", title=f"{data}: {schema.rows} rows")
    for c in schema.columns:
        rule = (f"[{c.range[0]:g}, {c.range[1]:g}]" if c.range else
                f"{len(c.categories)} levels" + (" + other" if c.capped else "")
                if c.role == "categorical" else "")
        table.add_row(c.name, c.role, c.dtype, f"{c.null_fraction:.1%}", rule)
    console.print(table)
    typer.echo(f"init: wrote the schema of {shown} into {written}; review it, then run "
               "`abx run` (or abx data/validate/features)")
