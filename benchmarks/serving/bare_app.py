"""Baselines for the serving benchmark: the thinnest servers around the same model.

- ``bare``: a FastAPI endpoint that loads the registered model once, applies the same numpy
  rewrite the router uses, and scores one JSON row per request: no validation, routing, logging
  or metrics.
- ``bare --batch``: the same with the simplest opportunistic batching (requests waiting while the
  model runs are scored together), so the like-for-like figure against the router is visible.
- ``ceiling``: a bare ASGI app answering a constant JSON: what one uvicorn worker can do at all.

Run: python -m benchmarks.serving.bare_app --port 9001 [--model-uri URI --tracking-uri URI]
[--batch | --ceiling]
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

# FastAPI resolves the handlers' annotations from this module's globals.
from fastapi import FastAPI, Request, Response  # noqa: E402 - after the env var, before sklearn


def ceiling_app() -> Any:
    """Raw ASGI, constant answer: the ceiling of the HTTP stack itself."""
    body = b'{"prediction":0.5}'
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        more = True
        while more:
            more = (await receive()).get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


class _Batcher:
    """Score everything that queued while the previous call ran, in one model call."""

    def __init__(self, score: Any):
        self.score = score
        self.pending: list[tuple[list[Any], asyncio.Future[float]]] = []
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def submit(self, row: list[Any]) -> float:
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self.run())
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.pending.append((row, fut))
        self.wake.set()
        return await fut

    async def run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.pending:
                batch, self.pending = self.pending[:256], self.pending[256:]
                probs = self.score([r for r, _ in batch])
                for (_, fut), p in zip(batch, probs, strict=True):
                    fut.set_result(float(p))
                await asyncio.sleep(0)


def build(model_uri: str, tracking_uri: str, batch: bool = False) -> Any:
    import mlflow
    import mlflow.sklearn
    import numpy as np
    import orjson

    from pipeline_components.serving.fastpath import numpy_ready

    mlflow.set_tracking_uri(tracking_uri)
    model = mlflow.sklearn.load_model(model_uri)
    names = [str(n) for n in model.feature_names_in_]
    fast = numpy_ready(model, names)

    def score(rows: list[list[Any]]) -> Any:
        return fast.predict_proba(np.array(rows, dtype=object))[:, 1]

    batcher = _Batcher(score) if batch else None
    app = FastAPI()

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        feats = orjson.loads(await request.body())["features"]
        row = [feats[c] for c in names]
        p = await batcher.submit(row) if batcher else float(score([row])[0])
        return Response(orjson.dumps({"prediction": p}), media_type="application/json")

    @app.get("/readyz")
    async def ready() -> Response:
        return Response(b'{"status":"ready"}', media_type="application/json")

    return app


if __name__ == "__main__":
    import uvicorn

    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--model-uri")
    p.add_argument("--tracking-uri")
    p.add_argument("--batch", action="store_true")
    p.add_argument("--ceiling", action="store_true")
    a = p.parse_args()
    app = ceiling_app() if a.ceiling else build(a.model_uri, a.tracking_uri, a.batch)
    uvicorn.run(app, host="127.0.0.1", port=a.port, log_level="warning", access_log=False)
