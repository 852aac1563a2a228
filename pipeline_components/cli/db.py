"""`abx db current|upgrade`: the schema revision of the prediction and control stores.

abx refuses to start on a store an older abx made (``pipeline_components/migrations``); these
commands show where each store is and bring it to this abx's revision, keeping every row.
"""

from __future__ import annotations

import json
from typing import Any

import typer
from sqlalchemy.exc import SQLAlchemyError

from pipeline_components.cli._app import ParamsOpt, SetOpt, app, load
from pipeline_components.errors import AbxError, AnalysisError

db_app = typer.Typer(help="Schema migrations of the prediction and control stores (Alembic).",
                     no_args_is_help=True)
app.add_typer(db_app, name="db")


def _targets(params: Any, set_: list[str] | None) -> list[tuple[str, Any]]:
    from pipeline_components.migrations import CONTROL, STORE

    cfg = load(params, set_)
    return [(cfg.store_url, STORE), (cfg.control_url, CONTROL)]


def _unreachable(url: str, exc: Exception) -> AbxError:
    from pipeline_components.migrations import safe_url

    return AnalysisError(f"store {safe_url(url)} is not reachable: {exc}")


@db_app.command("current")
def current(params: ParamsOpt = "params.yaml", set_: SetOpt = None) -> None:  # type: ignore[assignment]
    """Each store's revision, this abx's head, and what to do."""
    from pipeline_components.migrations import safe_url, state
    from pipeline_components.store import connect

    out = []
    for url, schema in _targets(params, set_):
        engine = connect(url)
        try:
            out.append({"url": safe_url(url), **state(engine, schema)})
        except SQLAlchemyError as exc:
            raise _unreachable(url, exc) from exc
        finally:
            engine.dispose()
    typer.echo(json.dumps(out, indent=2))


@db_app.command("upgrade")
def upgrade(params: ParamsOpt = "params.yaml", set_: SetOpt = None) -> None:  # type: ignore[assignment]
    """Migrate both stores to this abx's revision (rows kept; a no-op when up to date)."""
    from pipeline_components.migrations import safe_url
    from pipeline_components.migrations import upgrade as migrate
    from pipeline_components.store import connect

    out = []
    for url, schema in _targets(params, set_):
        engine = connect(url)
        try:
            before, after = migrate(engine, schema)
        except SQLAlchemyError as exc:
            raise _unreachable(url, exc) from exc
        finally:
            engine.dispose()
        out.append({"url": safe_url(url), "schema": schema.name, "from": before, "to": after})
    typer.echo(json.dumps(out, indent=2))
