"""App factory: ``create_app(cfg, variants)`` builds the router service for one experiment.

Startup opens the prediction store and its background writer, then loads the variants in a
thread (``/readyz`` turns 200 when every one is loaded). Shutdown, which uvicorn runs after
in-flight requests finished, drains the shadow queue and flushes the writer within the budget of
``serving.shutdown_grace_s`` (``shutdown_budget``), so the store (or, past the deadline, the spool)
holds a row for every answered request.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from fastapi import FastAPI

from pipeline_components.config import Config
from pipeline_components.serving.admin import admin
from pipeline_components.serving.api import router as api_router
from pipeline_components.serving.heap import GcWatch, freeze_loaded_heap
from pipeline_components.serving.keys import endpoint_secret
from pipeline_components.serving.router import Router
from pipeline_components.serving.spool import Spool
from pipeline_components.serving.variants import default_variants
from pipeline_components.serving.writer import BatchWriter
from pipeline_components.store import make_engine

log = logging.getLogger("abx.serving")


def admin_token(cfg: Config) -> str | None:
    """serving.admin_token, else the ABX_ADMIN_TOKEN environment variable (None: admin off)."""
    tok = cfg.serving.admin_token
    return (tok.get_secret_value() if tok else None) or os.environ.get("ABX_ADMIN_TOKEN") or None


def qa_token(cfg: Config) -> str | None:
    """serving.qa_token, else ABX_QA_TOKEN (None: only the admin token may force a variant)."""
    tok = cfg.serving.qa_token
    return (tok.get_secret_value() if tok else None) or os.environ.get("ABX_QA_TOKEN") or None


def shutdown_budget(grace_s: float) -> tuple[int, float]:
    """Split the backend's SIGTERM->SIGKILL grace: (s for in-flight requests, s for the drain).

    uvicorn first waits for in-flight requests (up to a third of the grace), then the lifespan
    drains the shadow queue and the log writer in what is left minus 1 s of slack, so the whole
    shutdown ends before the backend's SIGKILL (``LocalBackend.stop`` waits ``grace_s``). Rows
    the drain cannot write in time go to the spool, not to /dev/null.
    """
    requests = max(1, int(grace_s // 3))
    return requests, max(0.5, grace_s - requests - 1.0)


def _limit_threads() -> None:
    # OpenMP/BLAS pools double the CPU per call of small models on a busy box (STACK-NOTES).
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1)
    except Exception:  # threadpoolctl missing or no pools: nothing to limit
        pass


def create_app(cfg: Config, variants: Mapping[str, str] | None = None) -> FastAPI:
    """Build the router app.

    Args:
        cfg: the experiment config (serving section, store URL, salt, tracking URI).
        variants: name -> ``models:/NAME@alias`` | ``models:/NAME/VERSION`` | ``http(s)://...``;
            default: the champion and challenger aliases of ``cfg.registry.model_name``.
    """
    uris = dict(variants or default_variants(cfg.registry.model_name))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _limit_threads()
        if any(u.startswith("models:/") or u.startswith("runs:/") for u in uris.values()):
            import mlflow

            mlflow.set_tracking_uri(cfg.tracking_uri)
            mlflow.set_registry_uri(cfg.tracking_uri)  # models:/ resolve in this store too
        s = cfg.serving
        spool = Spool.open(cfg.spool_dir, fsync=s.wal_fsync)
        writer = BatchWriter(make_engine(cfg.store_url), s.flush_interval_s, s.flush_max_rows,
                             s.writer_max_pending, spool=spool, durable=s.durable)
        rt = Router(cfg, uris, writer.start())
        app.state.router = rt
        app.state.gc = GcWatch().install()

        def load() -> None:
            rt.load()
            if rt.ready and s.gc_freeze:  # the loaded heap is never garbage: stop rescanning it
                freeze_loaded_heap()
            app.state.gc.reset()  # from here on: the pauses requests can meet

        threading.Thread(target=load, name="abx-load", daemon=True).start()
        try:
            yield
        finally:
            app.state.gc.uninstall()
            deadline = time.monotonic() + shutdown_budget(s.shutdown_grace_s)[1]
            rt.close(deadline)
            log.info("router stopped; rows written: %s", writer.written)

    app = FastAPI(title="abx router", version="1", lifespan=lifespan)
    app.state.admin_token = admin_token(cfg)
    app.state.qa_token = qa_token(cfg)
    app.state.client_key = endpoint_secret(cfg, "client_key")  # /feedback (serving/feedback.py)
    app.include_router(api_router)
    app.include_router(admin)
    return app
