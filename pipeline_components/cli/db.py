"""`abx db current|upgrade`: the schema revision of the prediction and control stores.

abx refuses to start on a store an older abx made (``pipeline_components/migrations``); these
commands show where each store is and bring it to this abx's revision, keeping every row.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import typer
from sqlalchemy.exc import SQLAlchemyError

from pipeline_components.cli._app import ParamsOpt, SetOpt, app, load
from pipeline_components.errors import AnalysisError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from pipeline_components.migrations import Schema

db_app = typer.Typer(help="Schema migrations of the prediction and control stores (Alembic).",
                     no_args_is_help=True)
app.add_typer(db_app, name="db")


def _each(params: Any, set_: list[str] | None,
          step: Callable[[Engine, Schema], dict[str, Any]]) -> None:
    """Run ``step`` on the prediction store and the control store; print one JSON list."""
    from pipeline_components.migrations import CONTROL, STORE, safe_url
    from pipeline_components.store import connect

    cfg = load(params, set_)
    out = []
    for url, schema in ((cfg.store_url, STORE), (cfg.control_url, CONTROL)):
        engine = connect(url)
        try:
            out.append({"url": safe_url(url), **step(engine, schema)})
        except SQLAlchemyError as exc:
            raise AnalysisError(f"{schema.name} database {safe_url(url)} is not reachable: "
                                f"{exc}") from exc
        finally:
            engine.dispose()
    typer.echo(json.dumps(out, indent=2))


@db_app.command("current")
def current(params: ParamsOpt = "params.yaml", set_: SetOpt = None) -> None:  # type: ignore[assignment]
    """Each store's revision, this abx's head, and what to do."""
    from pipeline_components.migrations import state

    _each(params, set_, state)


@db_app.command("upgrade")
def upgrade(params: ParamsOpt = "params.yaml", set_: SetOpt = None) -> None:  # type: ignore[assignment]
    """Migrate both stores to this abx's revision (rows kept; a no-op when up to date)."""
    from pipeline_components.migrations import upgrade as migrate

    def step(engine: Engine, schema: Schema) -> dict[str, Any]:
        before, after = migrate(engine, schema)
        return {"schema": schema.name, "from": before, "to": after}

    _each(params, set_, step)
