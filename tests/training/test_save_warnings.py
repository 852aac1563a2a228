"""Saving a model inside an Airflow task must not flood the task log with warnings.

skops scans every loaded module to name each saved object's module; in an Airflow task process
Airflow is imported first, and its deprecated-module shims answer each lookup with a
FutureWarning naming the attribute (1,160 for one model in a real DAG run's train log).
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

from pipeline_components.training.mlflow_runs import quiet_skops_module_scan

# Like a task process: Airflow (and its shims) loaded before the model is saved.
_TASK = """
import importlib, json, warnings
import airflow.sdk
for shim in ("airflow.utils.timezone", "airflow.utils.trigger_rule"):
    importlib.import_module(shim)
import numpy as np
from sklearn.ensemble import ExtraTreesClassifier
from pipeline_components.training.mlflow_runs import quiet_skops_module_scan, trusted_types
x = np.random.default_rng(0).random((100, 3))
model = ExtraTreesClassifier(n_estimators=5, random_state=0).fit(x, x[:, 0] > 0.5)
counts = {}
for quiet in (False, True):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        if quiet:
            with quiet_skops_module_scan():
                trusted_types(model)
        else:
            trusted_types(model)
    counts[str(quiet)] = len(caught)
print(json.dumps(counts))
"""


def test_the_save_path_is_quiet_in_an_airflow_process() -> None:
    out = subprocess.run([sys.executable, "-c", _TASK], capture_output=True, text=True,
                         timeout=300, check=True)
    counts = json.loads(out.stdout.strip().splitlines()[-1])
    assert counts["False"] > 100  # the flood is real here (guards the test itself)
    assert counts["True"] == 0


def test_other_warnings_still_show() -> None:
    with warnings.catch_warnings(record=True) as caught, quiet_skops_module_scan():
        warnings.simplefilter("default")
        warnings.warn("a real one", FutureWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["a real one"]
