"""``RouterClient``: the Python side of the router's HTTP contract (used by the DAG and tests)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import httpx

from pipeline_components.errors import DeploymentError


class RouterClient:
    """Thin httpx client; raises DeploymentError naming the endpoint and the server's message.

    Example:
        >>> c = RouterClient("http://127.0.0.1:8765", token="secret")  # doctest: +SKIP
        >>> c.predict("user-1", {"x0": 0.1, "segment": "new"})["variant"]  # doctest: +SKIP
        'champion'
    """

    def __init__(self, url: str, token: str | None = None, timeout_s: float = 10.0,
                 client_key: str | None = None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        key = client_key or os.environ.get("ABX_CLIENT_KEY")
        if key:  # /feedback needs it (serving/feedback.py)
            headers["X-ABX-Client-Key"] = key
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        try:
            r = self._http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise DeploymentError(f"{method} {self.url}{path}: {exc}") from exc
        if r.status_code >= 400:
            raise DeploymentError(f"{method} {self.url}{path}: HTTP {r.status_code}: {r.text}")
        return r.json()

    def predict(self, unit_id: str, features: Mapping[str, Any],
                variant: str | None = None) -> dict[str, Any]:
        headers = {"X-ABX-Variant": variant} if variant else {}
        return self._call("POST", "/predict", json={"unit_id": unit_id, "features": dict(features)},
                          headers=headers)

    def predict_batch(self, instances: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
        return self._call("POST", "/predict", json={"instances": list(instances)})["predictions"]

    def feedback(self, outcome: float, request_id: str | None = None,
                 unit_id: str | None = None, reward: float | None = None,
                 feedback_id: str | None = None) -> dict[str, Any]:
        body = {"outcome": outcome, "request_id": request_id, "unit_id": unit_id,
                "reward": reward, "feedback_id": feedback_id}
        clean = {k: v for k, v in body.items() if v is not None}
        return self._call("POST", "/feedback", json=clean)

    def status(self) -> dict[str, Any]:
        return self._call("GET", "/admin/status")

    def set_weights(self, weights: Mapping[str, float],
                    reset_breaker: bool = False) -> dict[str, Any]:
        body = {"weights": dict(weights), "reset_breaker": reset_breaker}
        return self._call("POST", "/admin/weights", json=body)

    def promote(self, variant: str = "challenger") -> dict[str, Any]:
        return self._call("POST", "/admin/promote", params={"variant": variant})

    def rollback(self, reason: str) -> dict[str, Any]:
        return self._call("POST", "/admin/rollback", json={"reason": reason})

    def ready(self) -> bool:
        try:
            return self._http.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RouterClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
