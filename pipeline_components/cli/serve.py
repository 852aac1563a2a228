"""`abx serve`: run the champion/challenger router for one experiment (uvicorn, one worker).

One worker on purpose: weights, the breaker and the writer live in the process, so an admin
weight change is atomic for all traffic. Scale out with several routers on one PostgreSQL store
(assignment is a pure hash, so every router agrees).
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from pipeline_components.cli._app import ParamsOpt, SetOpt, app, console, load
from pipeline_components.errors import ConfigError

VariantOpt = Annotated[
    list[str] | None,
    typer.Option("--variant", "-V", help="NAME=URI (models:/NAME@alias | http://..); repeatable."),
]


def parse_variants(items: list[str] | None) -> dict[str, str] | None:
    """``["champion=models:/m@champion", ...]`` -> dict, or None for the config's defaults."""
    if not items:
        return None
    out: dict[str, str] = {}
    for item in items:
        name, sep, uri = item.partition("=")
        if not sep or not name.strip() or not uri.strip():
            raise ConfigError(
                f"--variant {item!r}: expected NAME=URI, e.g. champion=models:/m@champion"
            )
        out[name.strip()] = uri.strip()
    return out


@app.command("serve")
def serve(
    params: ParamsOpt = "params.yaml",  # type: ignore[assignment]
    set_: SetOpt = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default serving.host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default serving.port).")] = None,
    variant: VariantOpt = None,
) -> None:
    """Serve /predict, /feedback, /metrics and /admin/* for the experiment in params."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import uvicorn

    from pipeline_components.deploy.local import free_port
    from pipeline_components.serving.app import create_app, shutdown_budget

    cfg = load(params, set_)
    app_ = create_app(cfg, parse_variants(variant))
    bind = host or cfg.serving.host
    port = cfg.serving.port if port is None else port
    port = port or free_port(bind)  # 0: pick a free port, and say which
    console.print(f"abx router for experiment {cfg.experiment.id!r} on http://{bind}:{port}")
    uvicorn.run(
        app_,
        host=bind,
        port=port,
        workers=1,
        log_level=os.environ.get("ABX_LOG_LEVEL", "warning"),
        access_log=False,
        timeout_graceful_shutdown=shutdown_budget(cfg.serving.shutdown_grace_s)[0],
    )
