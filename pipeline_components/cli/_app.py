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


_ROOT: dict[str, Path] = {}


def project_root() -> Path:
    """The one folder every subcommand anchors relative paths at: ``--root``, else the cwd."""
    return _ROOT.get("root") or Path.cwd()


def load(params: Path, sets: list[str] | None) -> Config:
    """Load the config the way every subcommand does: params file plus ``--set`` overrides,
    relative paths (state dir, data, reports) anchored at the project root."""
    return load_config(params, parse_overrides(sets or []), root=project_root())


@app.callback()
def _root(
    root: Annotated[Path | None, typer.Option(
        "--root", envvar="ABX_ROOT", file_okay=False,
        help="Project root: relative paths of params.yaml (.abx/, data/, reports/) live here, "
             "for every subcommand (default: the working directory).")] = None,
) -> None:
    """abx: data -> validate -> features -> train -> register -> canary -> analyze -> decide."""
    _ROOT.pop("root", None)
    if root is not None:
        _ROOT["root"] = root.resolve()
