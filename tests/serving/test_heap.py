"""Freezing the loaded heap and timing the collections that remain."""

from __future__ import annotations

import gc

from pipeline_components.serving.heap import GcWatch, freeze_loaded_heap


def test_frozen_objects_leave_the_collectors_reach_and_pauses_are_timed() -> None:
    watch = GcWatch().install()
    try:
        kept = [[i] for i in range(10_000)]  # long-lived objects, like a loaded model's
        frozen = freeze_loaded_heap()
        assert frozen >= len(kept) and gc.get_freeze_count() == frozen
        assert watch.count[2] >= 1  # the collection freeze_loaded_heap ran was seen and timed
        gc.collect(0)
        st = watch.status()
        assert st["collections"][0] >= 1 and st["max_pause_ms"][2] > 0.0
        assert st["frozen_objects"] == frozen
        watch.reset()  # once loaded: only the pauses requests can meet
        assert watch.status()["collections"] == [0, 0, 0]
        assert watch.status()["max_pause_ms"] == [0.0, 0.0, 0.0]
    finally:
        watch.uninstall()
        gc.unfreeze()  # leave the test process as it was
    assert watch._callback not in gc.callbacks
