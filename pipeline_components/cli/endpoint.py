"""`abx endpoint serve|up|status|down|load|unload|promote|weights|rollback|events|detach`.

Every command except ``serve``/``up``/``down`` talks to the control state (the store), not to
one process, so it reaches every replica; changes return once every live replica applied them.
``serve`` is the foreground single-replica process a container runs.
"""

from __future__ import annotations

import json
import os
import time
from typing import Annotated, Any

import typer

from pipeline_components.cli._app import ParamsOpt, SetOpt, app, console, load

endpoint_app = typer.Typer(help="The long-lived endpoint: replicas, variants, weights, events.",
                           no_args_is_help=True)
app.add_typer(endpoint_app, name="endpoint")
ACTOR = f"cli:{os.environ.get('USER', 'user')}"


def _print(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


@endpoint_app.command("serve")
def serve(
    params: ParamsOpt = "params.yaml",  # type: ignore[assignment]
    set_: SetOpt = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default endpoint.host).")]
    = None,
    port: Annotated[int | None, typer.Option(help="Port (default endpoint.port).")] = None,
) -> None:
    """One replica in the foreground (what a container runs): follows the control state."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import uvicorn

    from pipeline_components.deploy.local import free_port
    from pipeline_components.serving.app import shutdown_budget
    from pipeline_components.serving.endpoint_app import create_endpoint_app

    cfg = load(params, set_)
    bind = host or cfg.endpoint.host
    port = cfg.endpoint.port if port is None else port
    port = port or free_port(bind)
    url_host = "127.0.0.1" if bind in ("0.0.0.0", "") else bind
    url = os.environ.get("ABX_REPLICA_URL") or f"http://{url_host}:{port}"
    console.print(f"abx endpoint {cfg.endpoint.name!r} replica on {url}")
    uvicorn.run(create_endpoint_app(cfg, url), host=bind, port=port, workers=1,
                log_level=os.environ.get("ABX_LOG_LEVEL", "warning"), access_log=False,
                timeout_graceful_shutdown=shutdown_budget(cfg.serving.shutdown_grace_s)[0])


@endpoint_app.command("up")
def up(
    params: ParamsOpt = "params.yaml",  # type: ignore[assignment]
    set_: SetOpt = None,
    replicas: Annotated[int | None, typer.Option(help="Default endpoint.replicas.")] = None,
) -> None:
    """Start the endpoint's replicas (the stored state comes back as it was); idempotent."""
    from pipeline_components.deploy import get_backend
    from pipeline_components.serving import operations as ops

    cfg = load(params, set_)
    ops.ensure_endpoint(cfg, ACTOR)
    deps = get_backend(cfg.serving.backend).start_endpoint(cfg, replicas)
    _print({"endpoint": cfg.endpoint.name, "replicas": [d.to_dict() for d in deps]})


@endpoint_app.command("down")
def down(params: ParamsOpt = "params.yaml", set_: SetOpt = None) -> None:  # type: ignore[assignment]
    """Stop the local replicas (the control state stays: `up` brings it back)."""
    from pipeline_components.deploy import get_backend

    cfg = load(params, set_)
    stopped = get_backend(cfg.serving.backend).stop_endpoint(cfg)
    _print({"endpoint": cfg.endpoint.name, "stopped": [d.url for d in stopped]})


@endpoint_app.command("status")
def status(params: ParamsOpt = "params.yaml", set_: SetOpt = None) -> None:  # type: ignore[assignment]
    """Variants (pinned versions, weights), breaker, experiment attached, replicas."""
    from pipeline_components.serving import operations as ops

    _print(ops.status(load(params, set_)))


@endpoint_app.command("load")
def load_cmd(
    name: Annotated[str, typer.Argument(help="Variant name, e.g. challenger.")],
    uri: Annotated[str, typer.Argument(help="models:/NAME@alias | models:/NAME/VERSION | http..")],
    params: ParamsOpt = "params.yaml",  # type: ignore[assignment]
    set_: SetOpt = None,
    weight: Annotated[float | None, typer.Option(help="Weight once loaded everywhere.")] = None,
) -> None:
    """Load a model into every replica (in the background; routable once ready everywhere)."""
    from pipeline_components.serving import operations as ops

    _print(ops.load(load(params, set_), name, uri, ACTOR, weight=weight))


@endpoint_app.command("unload")
def unload(
    name: Annotated[str, typer.Argument(help="Variant name.")],
    params: ParamsOpt = "params.yaml",  # type: ignore[assignment]
    set_: SetOpt = None,
) -> None:
    """Stop routing to a variant on every replica and free it (never the champion)."""
    from pipeline_components.serving import operations as ops

    _print(ops.unload(load(params, set_), name, ACTOR))


@endpoint_app.command("promote")
def promote(
    name: Annotated[str, typer.Argument(help="Variant that becomes the champion.")]
    = "challenger",
    params: ParamsOpt = "params.yaml",  # type: ignore[assignment]
    set_: SetOpt = None,
) -> None:
    """Make a loaded variant the champion in place (the registry alias is not touched)."""
    from pipeline_components.serving import operations as ops

    _print(ops.promote(load(params, set_), name, ACTOR))


@endpoint_app.command("weights")
def weights(
    pairs: Annotated[list[str], typer.Argument(help="NAME=WEIGHT ... (others keep theirs)")],
    params: ParamsOpt = "params.yaml",  # type: ignore[assignment]
    set_: SetOpt = None,
    reset_breaker: Annotated[bool, typer.Option(help="Close a tripped breaker.")] = False,
) -> None:
    """Set traffic weights on every replica (refused while the breaker is tripped)."""
    from pipeline_components.errors import ConfigError
    from pipeline_components.serving import operations as ops

    parsed: dict[str, float] = {}
    for p in pairs:
        k, sep, v = p.partition("=")
        try:
            parsed[k.strip()] = float(v)
        except ValueError:
            raise ConfigError(f"weights {p!r}: expected NAME=WEIGHT, e.g. challenger=0.1"
                              ) from None
        if not sep or not k.strip():
            raise ConfigError(f"weights {p!r}: expected NAME=WEIGHT, e.g. challenger=0.1")
    cfg = load(params, set_)
    version = ops.set_weights(cfg, parsed, ACTOR, reset_breaker=reset_breaker)
    _print({"control_version": version, "weights": ops.status(cfg)["variants"]})


@endpoint_app.command("rollback")
def rollback(
    reason: Annotated[str, typer.Option(help="Why (stored in the event).")] = "manual rollback",
    params: ParamsOpt = "params.yaml",  # type: ignore[assignment]
    set_: SetOpt = None,
) -> None:
    """All traffic to the champion on every replica."""
    from pipeline_components.serving import operations as ops

    _print({"control_version": ops.rollback(load(params, set_), ACTOR, reason)})


@endpoint_app.command("detach")
def detach(
    experiment: Annotated[str, typer.Argument(help="Experiment id to detach.")],
    params: ParamsOpt = "params.yaml",  # type: ignore[assignment]
    set_: SetOpt = None,
) -> None:
    """Detach an experiment and unload the variants it added (e.g. after a crashed run)."""
    from pipeline_components.serving import operations as ops

    cfg = load(params, set_)
    _print(ops.open_control(cfg).detach(cfg.endpoint.name, experiment, reason=ACTOR))


@endpoint_app.command("events")
def events(
    params: ParamsOpt = "params.yaml",  # type: ignore[assignment]
    set_: SetOpt = None,
    limit: Annotated[int, typer.Option(help="Most recent N.")] = 30,
) -> None:
    """The change log: every load, unload, weight change, promote, breaker trip, replica."""
    from pipeline_components.serving import operations as ops

    cfg = load(params, set_)
    for e in ops.open_control(cfg).events(cfg.endpoint.name, limit=limit):
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(e["ts"]))
        typer.echo(f"{when}  v{e['version']:<5} {e['kind']:<12} {e['actor']:<28} "
                   f"{json.dumps(e['detail'], default=str)}")
