"""Nullable features and unseen categories at the router (real HTTP, real registered models).

The models impute (features.build_preprocessor), so the router accepts null for the columns
params.yaml allows to be null and answers them; null elsewhere is a 422 naming the field. An
unseen category is answered through the model's explicit "other" level and counted.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from pipeline_components.config import Config
from pipeline_components.serving.testing import ThreadServer


def test_null_for_nullable_columns_unseen_categories_and_refusal_reasons(
    make_cfg: Callable[..., Config], rows: list[dict[str, Any]], tmp_path: Path
) -> None:
    cfg = make_cfg({"validation.columns": {"x0": {"max_null_fraction": 0.1},
                                           "segment": {"max_null_fraction": 0.1}}})
    server = ThreadServer(cfg).start()
    try:
        ok = httpx.post(f"{server.url}/predict", json={"instances": [
            {"unit_id": "a", "features": {**rows[0], "x0": None, "segment": None}},
            {"unit_id": "b", "features": {**rows[1], "segment": "vip"}}]})
        assert ok.status_code == 200, ok.text
        answers = ok.json()["predictions"]
        assert all(a["status"] == "ok" and 0 < a["prediction"] < 1 for a in answers)
        bad = httpx.post(f"{server.url}/predict",
                         json={"unit_id": "c", "features": {**rows[2], "x1": None}})
        assert bad.status_code == 422
        assert bad.json()["detail"].startswith("features.x1: null not allowed")
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'abx_refused_total{reason="null not allowed"} 1.0' in metrics
        assert 'abx_unseen_categories_total{feature="segment"} 1.0' in metrics
    finally:
        server.stop()
