"""Test helpers others can reuse: register two small real models and make request payloads.

``register_test_models(cfg)`` trains two logistic-regression pipelines (the project's own
preprocessor on synthetic data), logs them to ``cfg.tracking_uri`` with a signature, registers
them as versions 1 and 2 of ``cfg.registry.model_name`` and points the ``champion`` and
``challenger`` aliases at them. Everything lives where ``cfg`` says (use a tmp_path state dir).
"""

from __future__ import annotations

import warnings
from typing import Any

from pipeline_components.config import Config

# Data keys the test models are trained with; fixed so tests do not move with params.yaml.
TEST_DATA = {
    "data.numeric_features": [f"x{i}" for i in range(6)],
    "data.categorical_features": {"segment": ["new", "casual", "loyal"],
                                  "device": ["mobile", "desktop", "tablet"]},
}


def training_frame(cfg: Config, n: int = 1500) -> tuple[Any, Any]:
    """(X, y) from the synthetic generator, columns in the training order."""
    from pipeline_components.data import generate_synthetic
    from pipeline_components.features import feature_columns

    df = generate_synthetic(cfg, n)
    return df[feature_columns(cfg)], df[cfg.data.target_column].astype(int)


def build_model(cfg: Config, c: float = 1.0) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    from pipeline_components.features import build_preprocessor

    return Pipeline([("pre", build_preprocessor(cfg)), ("clf", LogisticRegression(C=c))])


def register_test_models(cfg: Config, n: int = 1500) -> dict[str, str]:
    """Register champion (v1, C=1) and challenger (v2, C=0.05); returns alias -> version."""
    import mlflow
    import mlflow.sklearn
    import skops.io as sio
    from mlflow.models import infer_signature
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(cfg.tracking_uri)
    mlflow.set_registry_uri(cfg.tracking_uri)  # one set earlier in the process must not win
    mlflow.set_experiment("abx-serving-tests")
    x, y = training_frame(cfg, n)
    name = cfg.registry.model_name
    versions: dict[str, str] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for alias, c in (("champion", 1.0), ("challenger", 0.05)):
            model = build_model(cfg, c).fit(x, y)
            sig = infer_signature(x, model.predict_proba(x)[:, 1])
            with mlflow.start_run():
                info = mlflow.sklearn.log_model(
                    model, name="model", signature=sig, registered_model_name=name,
                    pip_requirements=["scikit-learn"], serialization_format="skops",
                    skops_trusted_types=sio.get_untrusted_types(data=sio.dumps(model)),
                )
            versions[alias] = str(info.registered_model_version)
            MlflowClient().set_registered_model_alias(name, alias, versions[alias])
    return versions


def sample_rows(cfg: Config, n: int = 100, seed: int = 7) -> list[dict[str, Any]]:
    """``n`` raw feature mappings (JSON-ready) for request payloads."""
    from pipeline_components.data import generate_synthetic
    from pipeline_components.features import feature_columns

    cols = feature_columns(cfg)
    df = generate_synthetic(cfg.model_copy(update={"experiment": cfg.experiment.model_copy(
        update={"seed": seed})}), max(n, 100)).head(n)
    cats = set(cfg.data.categorical_features)
    return [{c: (str(r[c]) if c in cats else float(r[c])) for c in cols}
            for r in df[cols].to_dict("records")]


class ThreadServer:
    """A real uvicorn server on a free loopback port, run in a thread of this process.

    Cheaper than a subprocess in tests (no second import of mlflow/sklearn) while still being
    real HTTP; ``stop()`` is uvicorn's graceful shutdown, so the writer flushes as in production.
    """

    def __init__(self, cfg: Config, variants: dict[str, str] | None = None):
        import threading

        import uvicorn

        from pipeline_components.deploy.local import free_port
        from pipeline_components.serving.app import create_app

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(cfg, variants)
        conf = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                              access_log=False, lifespan="on")
        self.server = uvicorn.Server(conf)
        self._thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self, timeout_s: float = 60.0) -> ThreadServer:
        import time

        import httpx

        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"server at {self.url} not ready after {timeout_s} s")

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(60)


async def _load(url: str, bodies: list[dict[str, Any]], concurrency: int,
                before: Any = None) -> list[Any]:
    import asyncio

    import httpx

    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=30.0, limits=limits) as client:

        async def one(i: int, body: dict[str, Any]) -> Any:
            async with sem:
                if before is not None:
                    await before(i, client)
                try:
                    return await client.post("/predict", json=body)
                except httpx.HTTPError as exc:
                    return exc

        return await asyncio.gather(*(one(i, b) for i, b in enumerate(bodies)))


def send_load(url: str, bodies: list[dict[str, Any]], concurrency: int = 16,
              before: Any = None) -> list[Any]:
    """POST ``bodies`` to ``url``/predict with bounded concurrency; returns responses/exceptions.

    ``before(i, client)`` (async) runs before request ``i``: e.g. an admin weight change.
    """
    import asyncio

    return asyncio.run(_load(url, bodies, concurrency, before))


def make_test_config(
    registry_state: Any, state_dir: Any, overrides: dict[str, Any] | None = None
) -> Config:
    """A config for tests: models from ``registry_state``'s MLflow db, everything else in
    ``state_dir``, a free port and a known admin token (``TEST_TOKEN``)."""
    from pipeline_components.config import load_config

    base = {
        **TEST_DATA,
        "experiment.state_dir": str(state_dir),
        "experiment.id": "exp-test",
        "tracking.tracking_uri": f"sqlite:///{registry_state}/mlflow.db",
        "serving.port": 0,
        "serving.admin_token": TEST_TOKEN,
        "endpoint.client_key": TEST_CLIENT_KEY,
        "serving.flush_interval_s": 0.05,
    }
    return load_config(None, {**base, **(overrides or {})})


TEST_TOKEN = "test-token-123"
TEST_CLIENT_KEY = "test-client-key-456"  # /feedback (separate from the admin token)
