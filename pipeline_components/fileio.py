"""Atomic file writes: a crash or a concurrent reader never sees half a file.

Every stage result, state file and receipt goes through :func:`write_json`; other formats
(Parquet) use :func:`atomic_path` directly. The temporary file sits beside the target (same
filesystem, so the final ``rename`` is atomic) and carries the writer's pid, so two processes
writing the same target never clobber each other's half-written temp file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed over ``path``.

    The parent folder is created. On an exception the temporary file is removed and ``path``
    keeps its previous content.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: str | Path, payload: Any, *, sort_keys: bool = True) -> Path:
    """Write ``payload`` as indented JSON (non-JSON values through ``str``), atomically."""
    target = Path(path)
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=sort_keys, default=str) + "\n")
    return target
