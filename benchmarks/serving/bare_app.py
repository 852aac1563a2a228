"""Baseline (a): the thinnest FastAPI endpoint around the same model, for the serving benchmark.

It loads the registered model once, applies the same numpy rewrite the router uses, and turns
the JSON features into one numpy row: no validation, routing, logging or metrics. The router's
cost per request is measured against this in the same run.

Run: python benchmarks/serving/bare_app.py --port 9001 --tracking-uri sqlite:///... --model-uri ...
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

from fastapi import FastAPI, Request, Response  # noqa: E402 - after the env var, before sklearn


def build(model_uri: str, tracking_uri: str) -> FastAPI:
    import mlflow
    import mlflow.sklearn
    import numpy as np
    import orjson

    from pipeline_components.serving.fastpath import numpy_ready

    mlflow.set_tracking_uri(tracking_uri)
    model = mlflow.sklearn.load_model(model_uri)
    names = [str(n) for n in model.feature_names_in_]
    fast = numpy_ready(model, names)
    app = FastAPI()

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        feats = orjson.loads(await request.body())["features"]
        row = np.array([[feats[c] for c in names]], dtype=object)
        return Response(orjson.dumps({"prediction": float(fast.predict_proba(row)[0, 1])}),
                        media_type="application/json")

    @app.get("/readyz")
    async def ready() -> Response:
        return Response(b'{"status":"ready"}', media_type="application/json")

    return app


if __name__ == "__main__":
    import uvicorn

    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--model-uri", required=True)
    p.add_argument("--tracking-uri", required=True)
    a = p.parse_args()
    uvicorn.run(build(a.model_uri, a.tracking_uri), host="127.0.0.1", port=a.port,
                log_level="warning", access_log=False)
