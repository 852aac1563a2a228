"""BentoML 1.4 service for the serving benchmark; runs inside the BentoML peer venv only.

A batchable API: BentoML's adaptive batching merges concurrent requests' ``rows`` lists into one
call (at most ``ABX_PEER_MAX_BATCH`` rows), which builds one DataFrame and calls the pipeline.
"""

from __future__ import annotations

import os
from typing import Any

import bentoml


@bentoml.service(workers=1)
class AbxModel:
    def __init__(self) -> None:
        import joblib

        self.model = joblib.load(os.environ["ABX_PEER_MODEL"])
        self.columns = [str(c) for c in self.model.feature_names_in_]

    @bentoml.api(batchable=True, max_batch_size=int(os.environ.get("ABX_PEER_MAX_BATCH", "32")),
                 max_latency_ms=1000)
    def predict(self, rows: list[dict[str, Any]]) -> list[float]:
        import pandas as pd

        frame = pd.DataFrame(rows, columns=self.columns)
        return [float(p) for p in self.model.predict_proba(frame)[:, 1]]
