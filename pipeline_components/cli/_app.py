"""The shared Typer app and the options every subcommand takes (--params, --set)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from pipeline_components.config import Config, load_config, parse_overrides

app = typer.Typer(
    name="abx",
    help="abx: rapid, safe A/B experiments for ML models (data -> train -> canary -> decide).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)

ParamsOpt = Annotated[
    Path, typer.Option("--params", "-p", help="params.yaml to load.", show_default=True)
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a param: KEY.PATH=VALUE (repeatable)."),
]


def load(params: Path, sets: list[str] | None) -> Config:
    """Load the config the way every subcommand does: params file plus ``--set`` overrides."""
    return load_config(params, parse_overrides(sets or []))


@app.callback()
def _root() -> None:
    """abx: data -> validate -> features -> train -> register -> canary -> analyze -> decide."""
