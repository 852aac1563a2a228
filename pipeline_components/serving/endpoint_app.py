"""App factory of one endpoint replica, and its admin routes (which write the control state).

The public routes (/predict, /feedback, /readyz, /metrics, /info) are the router's own; only the
admin side differs: a weight change, load, unload, promote or rollback made on any replica goes
to the control store, and every replica (this one included) applies it from there. Admin calls
answer once every live replica has applied the change.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from pipeline_components.config import Config
from pipeline_components.errors import AbxError, ConfigError
from pipeline_components.serving import operations as ops
from pipeline_components.serving.admin import require_admin
from pipeline_components.serving.api import json_response, parse, read_body
from pipeline_components.serving.api import router as api_router
from pipeline_components.serving.endpoint import EndpointRouter, Follower
from pipeline_components.serving.keys import endpoint_dir, endpoint_secret
from pipeline_components.serving.writer import BatchWriter
from pipeline_components.store import make_engine

log = logging.getLogger("abx.endpoint")
admin = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WeightsBody(_Body):
    weights: dict[str, float]
    reset_breaker: bool = False


class LoadBody(_Body):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    uri: str = Field(min_length=1, max_length=500)
    weight: float | None = Field(None, ge=0.0)


class NameBody(_Body):
    name: str = Field(min_length=1, max_length=64)


class ReasonBody(_Body):
    reason: str = Field(min_length=1, max_length=1000)


async def _do(request: Request, fn: Any, *args: Any, **kw: Any) -> Response:
    """Run a (blocking) control operation off the event loop; errors become 4xx naming why."""
    try:
        out = await run_in_threadpool(fn, request.app.state.cfg, *args, **kw)
    except ConfigError as exc:
        raise HTTPException(422, str(exc)) from None
    except AbxError as exc:
        raise HTTPException(409, str(exc)) from None
    return json_response(out if isinstance(out, dict) else {"control_version": out})


@admin.get("/status")
async def status(request: Request) -> Response:
    rt: EndpointRouter = request.app.state.router
    out = {**rt.status(), "replica_id": request.app.state.replica_id}
    out["control"] = await run_in_threadpool(ops.status, request.app.state.cfg)
    return json_response(out)


@admin.post("/weights")
async def weights(request: Request) -> Response:
    body = parse(WeightsBody, await read_body(request, 65536), request.app.state.router, "admin")
    return await _do(request, ops.set_weights, body.weights, _actor(request),
                     reset_breaker=body.reset_breaker)


@admin.post("/load")
async def load(request: Request) -> Response:
    body = parse(LoadBody, await read_body(request, 65536), request.app.state.router, "admin")
    return await _do(request, ops.load, body.name, body.uri, _actor(request), weight=body.weight)


@admin.post("/unload")
async def unload(request: Request) -> Response:
    body = parse(NameBody, await read_body(request, 65536), request.app.state.router, "admin")
    return await _do(request, ops.unload, body.name, _actor(request))


@admin.post("/promote")
async def promote(request: Request) -> Response:
    return await _do(request, ops.promote, request.query_params.get("variant", "challenger"),
                     _actor(request))


@admin.post("/rollback")
async def rollback(request: Request) -> Response:
    body = parse(ReasonBody, await read_body(request, 65536), request.app.state.router, "admin")
    return await _do(request, ops.rollback, _actor(request), body.reason)


@admin.get("/events")
async def events(request: Request) -> Response:
    cfg = request.app.state.cfg
    since = int(request.query_params.get("since", "0") or 0)
    rows = await run_in_threadpool(ops.open_control(cfg).events, cfg.endpoint.name, since)
    return json_response({"events": rows})


@admin.post("/flush")
async def flush(request: Request) -> Response:
    """Write this replica's queued log rows now (the canary calls it before analysing)."""
    writer: BatchWriter = request.app.state.router.writer
    await run_in_threadpool(writer.flush)
    return json_response({"written": dict(writer.written), "pending": writer.pending()})


def _actor(request: Request) -> str:
    return f"admin@{request.app.state.replica_id}"


def create_endpoint_app(cfg: Config, url: str) -> FastAPI:
    """One replica of endpoint ``cfg.endpoint.name``, reachable at ``url``."""
    replica_id = f"{os.uname().nodename[:24]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from pipeline_components.serving.app import _limit_threads, shutdown_budget
        from pipeline_components.serving.heap import GcWatch
        from pipeline_components.serving.spool import Spool
        from pipeline_components.tracking import configure_mlflow

        _limit_threads()
        configure_mlflow(cfg)
        await asyncio.to_thread(ops.ensure_endpoint, cfg, replica_id)
        s = cfg.serving
        spool = Spool.open(endpoint_dir(cfg) / "spool", fsync=s.wal_fsync)
        writer = BatchWriter(make_engine(cfg.store_url), s.flush_interval_s, s.flush_max_rows,
                             s.writer_max_pending, spool=spool, durable=s.durable)
        rt = EndpointRouter(cfg, writer.start())
        follower = Follower(cfg, rt, ops.open_control(cfg), replica_id, url)
        app.state.router, app.state.follower = rt, follower
        app.state.gc = GcWatch().install()
        follower.start()
        try:
            yield
        finally:
            deadline = time.monotonic() + shutdown_budget(s.shutdown_grace_s)[1]
            follower.stop()
            rt.close(deadline)
            log.info("endpoint replica %s stopped; rows written: %s", replica_id, writer.written)

    app = FastAPI(title=f"abx endpoint {cfg.endpoint.name}", version="1", lifespan=lifespan)
    app.state.cfg = cfg
    app.state.replica_id = replica_id
    app.state.admin_token = endpoint_secret(cfg, "admin_token")
    app.state.client_key = endpoint_secret(cfg, "client_key")
    app.include_router(api_router)
    app.include_router(admin)
    return app
