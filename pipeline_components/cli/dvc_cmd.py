"""`abx dvc generate`: write dvc.yaml from the stage definition (``pipeline_components.stages``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline_components.cli._app import app, console, project_root

dvc_app = typer.Typer(help="The `dvc repro` pipeline, generated from pipeline_components.stages.",
                      no_args_is_help=True)
app.add_typer(dvc_app, name="dvc")


@dvc_app.command("generate")
def generate(
    out: Annotated[Path | None, typer.Option(
        help="File to write (default: dvc.yaml in the project root).")] = None,
    check: Annotated[bool, typer.Option(
        "--check", help="Write nothing; exit 1 when the file differs from the definition.")]
    = False,
) -> None:
    """Write dvc.yaml from the stages (or, with --check, say whether it is up to date)."""
    from pipeline_components.stages import dvc_yaml

    target = out or project_root() / "dvc.yaml"
    text = dvc_yaml()
    current = target.read_text() if target.is_file() else None
    if check:
        if current != text:
            console.print(f"{target} is stale: run `abx dvc generate`", markup=False,
                          highlight=False)
            raise typer.Exit(1)
        console.print(f"{target} is up to date", markup=False, highlight=False)
        return
    if current != text:
        target.write_text(text)
    console.print(f"dvc: {'wrote' if current != text else 'unchanged'} {target}",
                  markup=False, highlight=False)
