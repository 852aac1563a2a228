"""A family that cannot fit fails alone, with Optuna's reason; registration uses the others."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline_components.errors import RegistryError
from pipeline_components.registry import pick_winner, register_best
from pipeline_components.training.runner import result_path, train_all

# max_leaf_nodes=1 is refused by HistGradientBoostingClassifier.fit: every trial fails.
BROKEN = {"max_leaf_nodes": {"type": "int", "low": 1, "high": 1}}


def test_one_failing_family_does_not_stop_the_others(make_cfg: Any) -> None:
    cfg = make_cfg({"experiment.id": "iso", "training.families": ["hist_gbdt", "logreg"],
                    "training.n_trials": 2, "training.search_spaces": {"hist_gbdt": BROKEN},
                    "registry.model_name": "abx-iso"})
    results = {r["family"]: r for r in train_all(cfg)}
    bad = results["hist_gbdt"]
    assert bad["failed"] and "max_leaf_nodes" in bad["error"]  # the reason, not '?'
    assert "has no completed trial (first failure: InvalidParameterError" in bad["error"]
    assert result_path(cfg, "hist_gbdt").is_file()  # the failure is recorded like a result
    assert not results["logreg"].get("failed") and results["logreg"]["best_value"] > 0.5
    reg = register_best(cfg)  # reads the result files: picks among the families that finished
    assert reg["family"] == "logreg"


def test_registration_fails_only_when_no_family_finished() -> None:
    results = [{"family": "a", "failed": True, "error": "ValueError: no"},
               {"family": "b", "failed": True, "error": "TypeError: nope"}]
    with pytest.raises(RegistryError, match=r"no model family finished training \(a: "
                                            r"ValueError: no; b: TypeError: nope\)"):
        pick_winner(results)
    assert pick_winner([*results, {"family": "c", "best_value": 0.7}])["family"] == "c"
