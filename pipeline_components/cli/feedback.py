"""`abx feedback import FILE`: delayed outcomes (CSV/Parquet) into the feedback log, idempotent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pipeline_components.cli._app import ParamsOpt, SetOpt, app, load

feedback_app = typer.Typer(help="Outcome feedback from production.", no_args_is_help=True)
app.add_typer(feedback_app, name="feedback")


@feedback_app.command("import")
def import_cmd(
    path: Annotated[Path, typer.Argument(help="CSV or Parquet: request_id and/or unit_id, "
                                         "outcome, timestamp [, reward, feedback_id].")],
    params: ParamsOpt = "params.yaml",  # type: ignore[assignment]
    set_: SetOpt = None,
    experiment: Annotated[str | None, typer.Option(help="Tag for rows no prediction matches.")]
    = None,
) -> None:
    """Validate every row (nothing is written if one is bad), match it to its experiment, store
    it once (a second import of the same file adds nothing)."""
    from pipeline_components.serving.feedback_import import import_feedback

    out = import_feedback(load(params, set_), path, experiment)
    typer.echo(json.dumps(out, indent=2, sort_keys=True))
