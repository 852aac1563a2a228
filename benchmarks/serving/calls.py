"""In-process cost of one model call: sklearn (the router's numpy path) vs the compiled runtime.

Same process, same rows, interleaved repetitions, medians: the per-call floor each scoring path
puts under every request, without HTTP.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np


def _median_us(fn: Callable[[], Any], reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def call_costs(uri: str, rows: list[dict[str, Any]], reps: int = 200) -> list[str]:
    """Lines comparing sklearn and compiled ``predict_proba`` on 1 and 32 rows of ``uri``."""
    import mlflow.sklearn

    from pipeline_components.serving.variants import load_local

    model = mlflow.sklearn.load_model(uri)
    names = [str(c) for c in model.feature_names_in_]
    var = load_local("bench", uri)
    sk = load_local("bench", uri, runtime="sklearn")
    out = [f"  serving path: {var.path} ({var.runtime})"]
    for n in (1, 32):
        x = np.array([[r[c] for c in names] for r in rows[:n]], dtype=object)
        a = b = 0.0
        for _ in range(3):  # interleave so a busy spell hits both
            a += _median_us(partial(sk.model.predict_proba, x), reps // 3)
            b += _median_us(partial(var.model.predict_proba, x), reps // 3)
        out.append(f"  predict_proba on {n:>2} row(s): sklearn {a / 3:8.1f} us   {var.path} "
                   f"{b / 3:8.1f} us   ratio {a / max(b, 1e-9):6.1f}x")
    return out
