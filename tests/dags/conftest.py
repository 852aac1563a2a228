"""Airflow for the DAG tests: a throwaway AIRFLOW_HOME, migrated once per session.

The environment is set when this conftest is imported, i.e. before anything imports airflow, so
Airflow's settings point at the tmp home (SQLite metadata, LocalExecutor) and at the repo's dags/.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
_HOME = Path(tempfile.mkdtemp(prefix="abx-airflow-"))
os.environ.update({
    "AIRFLOW_HOME": str(_HOME),
    "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__PARALLELISM": "4",
    "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "GX_ANALYTICS_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1",
    "OMP_NUM_THREADS": "1",
    "ABX_CANARY_POKE_S": "1",  # the canary sensor's poke interval (read when the DAG is parsed)
})


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """``airflow db migrate`` once (~7 s) into the session's AIRFLOW_HOME."""
    airflow = Path(sys.executable).parent / "airflow"
    subprocess.run([str(airflow), "db", "migrate"], check=True, env=os.environ.copy(),
                   capture_output=True, timeout=300)
    return _HOME
