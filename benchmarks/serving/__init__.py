"""Serving benchmark: bare FastAPI endpoint (a) vs the abx router (b) vs `mlflow models serve` (c).

``python -m benchmarks serving [--duration 10] [--connections 8] [--rounds 2] [--quick]``
"""

from __future__ import annotations

from benchmarks.serving.run import main

__all__ = ["main"]
