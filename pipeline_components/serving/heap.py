"""Keep the garbage collector's pauses off the request path: freeze the loaded heap, time pauses.

A loaded router holds millions of long-lived objects (mlflow, sklearn, pandas, the models). A full
collection walks all of them: ~175-280 ms measured on this machine, during which every in-flight
request waits. None of them is garbage, so after loading they are moved to the permanent
generation (``gc.freeze()``), which the collector never scans; later collections only walk what
requests allocate. ``GcWatch`` times every collection (``gc.callbacks``) so the pauses that remain
are visible on ``/admin/status`` instead of guessed.
"""

from __future__ import annotations

import gc
import threading
import time
from typing import Any


def freeze_loaded_heap() -> int:
    """Collect once, then move every surviving object out of the collector's reach.

    Call after models are loaded (and again after a hot swap: each call freezes what is alive).
    Returns the number of objects now frozen.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class GcWatch:
    """Count and time collections per generation (the callback costs ~1 µs per collection)."""

    def __init__(self) -> None:
        self.count = [0, 0, 0]
        self.total_ms = [0.0, 0.0, 0.0]
        self.max_ms = [0.0, 0.0, 0.0]
        self._t0: dict[int, float] = {}

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        tid = threading.get_ident()
        if phase == "start":
            self._t0[tid] = time.perf_counter()
            return
        t0 = self._t0.pop(tid, None)
        if t0 is None:
            return
        ms = (time.perf_counter() - t0) * 1000.0
        g = int(info.get("generation", 0))
        self.count[g] += 1
        self.total_ms[g] += ms
        self.max_ms[g] = max(self.max_ms[g], ms)

    def reset(self) -> None:
        """Forget what was timed so far: the app calls it once the variants are loaded, so the
        figures are the pauses requests can meet, not the load's own (deliberate) collection."""
        self.count = [0, 0, 0]
        self.total_ms = [0.0, 0.0, 0.0]
        self.max_ms = [0.0, 0.0, 0.0]

    def install(self) -> GcWatch:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)
        return self

    def uninstall(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def status(self) -> dict[str, Any]:
        return {"frozen_objects": gc.get_freeze_count(), "collections": list(self.count),
                "max_pause_ms": [round(m, 3) for m in self.max_ms],
                "total_pause_ms": [round(t, 1) for t in self.total_ms]}
