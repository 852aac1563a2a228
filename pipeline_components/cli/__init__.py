"""The ``abx`` command line: one subcommand per pipeline stage, each a thin call into a component.

Errors raised on purpose (``AbxError``) become one readable red line and the class's exit code;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys

from pipeline_components.cli._app import app, console
from pipeline_components.errors import AbxError
from pipeline_components.extras import missing_extra

# Importing a module registers its commands on ``app``.
for _name in ("config_cmd", "data", "train", "serve", "analyze", "experiment", "endpoint",
              "feedback", "image", "db", "dvc_cmd"):
    try:
        __import__(f"pipeline_components.cli.{_name}")
    except ModuleNotFoundError as exc:  # a stage not built yet
        if exc.name != f"pipeline_components.cli.{_name}":
            raise


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except AbxError as exc:
        _fail(exc)
    except ModuleNotFoundError as exc:  # a partial install (e.g. only abx[serve])
        err = missing_extra(exc)
        if err is None:
            raise
        _fail(err)


def _fail(exc: AbxError) -> None:
    console.print("[bold red]error:[/]", markup=True, end=" ")
    console.print(str(exc), markup=False, highlight=False, soft_wrap=True)
    sys.exit(exc.exit_code)


__all__ = ["app", "main"]
