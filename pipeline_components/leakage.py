"""Leak-free holdouts: record which units trained a model, and check a gate's holdout against it.

The split is keyed by ``features.split_salt`` (fixed for a dataset), not by the run seed, so every
experiment on the same data deals the same holdout and a champion never trained on a later
gate's holdout. This module is the check that this really held: each refit model logs the hashed
ids of the units it may have seen (train and validation splits) as an MLflow artifact of its run,
and the offline gate refuses to compare when the champion's units overlap the current holdout
(e.g. after ``split_salt`` or ``holdout_fraction`` changed). Ids are stored as 64-bit hashes, not
as the ids themselves.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline_components.config import Config

if TYPE_CHECKING:
    from mlflow import MlflowClient

UNITS_ARTIFACT = "training_units.npy"


def unit_hashes(ids: Iterable[Any]) -> np.ndarray:
    """Sorted unique 64-bit hashes of unit ids (as strings)."""
    values = [int.from_bytes(hashlib.sha256(str(i).encode()).digest()[:8], "big") for i in ids]
    return np.unique(np.array(values, dtype=np.uint64))


def seen_units(cfg: Config) -> np.ndarray:
    """Hashes of every unit a model of this experiment may have seen: train + validation."""
    from pipeline_components.features import load_split

    col = cfg.data.id_column
    ids = [*load_split(cfg, "train")[col], *load_split(cfg, "validation")[col]]
    return unit_hashes(ids)


def log_training_units(client: MlflowClient, run_id: str, cfg: Config) -> None:
    """Attach the seen-unit hashes to the model's run (read back by ``holdout_overlap``)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / UNITS_ARTIFACT
        np.save(path, seen_units(cfg))
        client.log_artifact(run_id, str(path))


def training_units(client: MlflowClient, run_id: str) -> np.ndarray | None:
    """The seen-unit hashes a run logged, or None when it logged none (an older model)."""
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = client.download_artifacts(run_id, UNITS_ARTIFACT, tmp)
        except (MlflowException, OSError):
            return None
        return np.load(local)


def holdout_overlap(cfg: Config, client: MlflowClient, version: str) -> dict[str, Any]:
    """How many of this experiment's holdout units trained model ``version``.

    Returns:
        ``{"version", "checked", "overlap", "holdout"}``; ``checked`` is False (and the reason
        in ``note``) when the version's run logged no unit record.
    """
    from pipeline_components.features import load_split

    holdout = unit_hashes(load_split(cfg, "holdout")[cfg.data.id_column])
    mv = client.get_model_version(cfg.registry.model_name, version)
    run_id = mv.run_id or mv.tags.get("run_id")
    seen = training_units(client, run_id) if run_id else None
    out: dict[str, Any] = {"version": version, "holdout": int(holdout.size)}
    if seen is None:
        return {**out, "checked": False, "overlap": None,
                "note": f"version {version} has no {UNITS_ARTIFACT} record; overlap unknown"}
    return {**out, "checked": True, "overlap": int(np.isin(holdout, seen).sum())}


def overlap_reason(check: dict[str, Any]) -> str:
    """The gate's refusal when the champion trained on part of the holdout."""
    return (f"holdout overlap: {check['overlap']} of {check['holdout']} holdout units were in "
            f"the training data of champion version {check['version']}; refusing to compare on "
            "a biased holdout (keep features.split_salt and features.holdout_fraction fixed "
            "for a dataset)")
