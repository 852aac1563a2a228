"""A training worker: ``python -m pipeline_components.training.worker FAMILY INDEX``.

The effective config and the storage URL arrive as JSON on stdin (``{"config", "storage"}``), so
the worker trains with exactly the parent's (overridden) config and a database password never
shows in the process list. Workers are plain subprocesses of ``sys.executable`` rather than
``multiprocessing`` children: that works the same under the CLI, pytest, Airflow's task runner or a
REPL (spawn re-imports the parent's ``__main__``, fork copies its MLflow/SQLAlchemy state).
"""

from __future__ import annotations

import json
import os
import sys

os.environ["OMP_NUM_THREADS"] = "1"  # before numpy/sklearn load their thread pools


def main(argv: list[str]) -> int:
    """Run one worker; the exit code tells the parent whether it worked."""
    from pipeline_components.config import config_from_mapping
    from pipeline_components.training.study import optimize

    family, index = argv[0], int(argv[1])
    payload = json.load(sys.stdin)
    cfg = config_from_mapping(payload["config"], source="<worker stdin>")
    barrier = payload.get("barrier")
    optimize(cfg, family, index, payload["storage"],
             barrier=(barrier[0], int(barrier[1])) if barrier else None)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
