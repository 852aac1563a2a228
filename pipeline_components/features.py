"""The features stage: a keyed split into train / validation / holdout, and the preprocessor.

The split is a pure function of (``features.split_salt``, user id): each user's hash picks their
split, so adding rows or reordering the file never moves an existing user, and the holdout (users
reserved as live traffic for the canary simulator and the offline gate) is the same for every
experiment on the dataset, whatever its seed: a champion never trained on a later holdout
(``leakage.py`` checks it at the gate). The preprocessor is returned unfitted
and travels inside every model pipeline, so serving applies exactly the training transform.
Outputs carry the data version (sha256 of the raw file, and DVC's md5 when dvc.lock has it).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from pipeline_components.config import Config
from pipeline_components.data import (
    TRUE_PROB_COLUMN,
    apply_drift,
    categorical_columns,
    file_hash,
    numeric_columns,
    read_table,
    write_table,
)
from pipeline_components.errors import DataError
from pipeline_components.fileio import write_json
from pipeline_components.preprocess import CategoryBuckets, MedianImputer, encoder_categories

SplitName = Literal["train", "validation", "holdout"]
SPLITS: tuple[SplitName, ...] = ("train", "validation", "holdout")
META_FILE = "meta.json"


def feature_columns(cfg: Config) -> list[str]:
    """Model input columns in training order: numeric features, then categorical ones."""
    return numeric_columns(cfg) + categorical_columns(cfg)


def build_preprocessor(cfg: Config) -> ColumnTransformer:
    """Unfitted ColumnTransformer: impute (+ scale) numerics, bucket and one-hot categoricals.

    Numerics: missing -> the training median, then StandardScaler (if configured).
    Categoricals: the allowed categories from params.yaml plus explicit ``other`` and ``missing``
    levels (``preprocess.py``), so every model sees the same one-hot layout whatever the training
    sample held, and a null or an unseen value at serving time means what it meant in training.
    """
    num = numeric_columns(cfg)
    cats = categorical_columns(cfg)
    steps: list[tuple[str, Any]] = [("impute", MedianImputer())]
    if cfg.features.scale_numeric:
        steps.append(("scale", StandardScaler()))
    transformers: list[tuple[str, Any, list[str]]] = [("num", Pipeline(steps), num)]
    if cats:
        allowed = [list(cfg.data.categorical_features[c]) for c in cats]
        encoder = OneHotEncoder(categories=encoder_categories(allowed), handle_unknown="error",
                                sparse_output=False)
        transformers.append(("cat", Pipeline([("buckets", CategoryBuckets(allowed)),
                                              ("onehot", encoder)]), cats))
    return ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False)


def split_labels(
    ids: pd.Series, salt: str | int, holdout: float, validation: float
) -> np.ndarray:
    """Split name per id from a keyed hash: holdout first, then validation, the rest train.

    Args:
        ids: unit ids (converted to str).
        salt: ``features.split_salt``; a different salt deals an independent split.
        holdout: share of all units reserved as live traffic.
        validation: share of the non-holdout units kept for validation.
    """
    u = np.fromiter(
        (
            int.from_bytes(hashlib.sha256(f"{salt}:{i}".encode()).digest()[:8], "big") / 2**64
            for i in ids.astype(str)
        ),
        dtype=float,
        count=len(ids),
    )
    cut_valid = holdout + (1.0 - holdout) * validation
    return np.where(u < holdout, "holdout", np.where(u < cut_valid, "validation", "train"))


def kept_columns(cfg: Config, df: pd.DataFrame) -> list[str]:
    """Columns every split keeps: id, features, covariate, target (and the truth when known)."""
    wanted = [cfg.data.id_column, *feature_columns(cfg)]
    if cfg.data.covariate_column:
        wanted.append(cfg.data.covariate_column)
    wanted += [cfg.data.target_column, TRUE_PROB_COLUMN]
    missing = [c for c in wanted[:-1] if c not in df.columns]
    if missing:
        raise DataError(f"features: raw data lacks column(s) {missing}; run `abx validate` first")
    return [c for c in wanted if c in df.columns]


def make_splits(cfg: Config, df: pd.DataFrame) -> dict[SplitName, pd.DataFrame]:
    """Pure core of the stage: split rows by id hash; drift the holdout for synthetic data."""
    f = cfg.features
    labels = split_labels(df[cfg.data.id_column], f.split_salt, f.holdout_fraction,
                          f.validation_fraction)
    table = df[kept_columns(cfg, df)]
    out: dict[SplitName, pd.DataFrame] = {
        name: table[labels == name].reset_index(drop=True) for name in SPLITS
    }
    if cfg.data.source == "synthetic" and cfg.data.synthetic.drift > 0:
        out["holdout"] = apply_drift(cfg, out["holdout"])
    return out


def dvc_md5(path: str | Path, lock_file: str | Path = "dvc.lock") -> str | None:
    """The md5 DVC recorded for ``path`` as a stage output in dvc.lock, or None when untracked."""
    lock = Path(lock_file)
    if not lock.is_file():
        return None
    try:
        stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
    except yaml.YAMLError:
        return None
    # Lock paths (and a relative ``path``) are relative to the lock file's folder.
    target = (lock.parent / path).resolve()
    for stage in stages.values():
        for out in stage.get("outs", []) or []:
            if (lock.parent / str(out.get("path", ""))).resolve() == target:
                return out.get("md5")
    return None


def run_features(cfg: Config, raw_path: str | Path | None = None) -> dict[str, Any]:
    """Stage entry point: read the raw table, write the three splits and ``meta.json``.

    Returns:
        ``{"out_dir", "rows": {split: n}, "data_version": {...}, "meta"}`` (paths as str).
    """
    from pipeline_components.validate import require_validated

    raw = Path(raw_path or cfg.data.raw_path)
    if not raw.exists():
        raise DataError(f"{raw}: file not found; run `abx data` and `abx validate` first")
    require_validated(cfg, raw)  # never split data that failed (or skipped) validation
    df = read_table(raw)
    splits = make_splits(cfg, df)
    out_dir = Path(cfg.features.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, part in splits.items():
        write_table(part, out_dir / f"{name}.parquet")
    meta = {
        "data_version": {"sha256": file_hash(raw), "dvc_md5": dvc_md5(raw)},
        "raw_path": str(raw),
        "seed": cfg.experiment.seed,
        "split": {"salt": cfg.features.split_salt, "holdout": cfg.features.holdout_fraction,
                  "validation": cfg.features.validation_fraction},
        "rows": {name: int(len(part)) for name, part in splits.items()},
        "columns": {
            "id": cfg.data.id_column,
            "target": cfg.data.target_column,
            "covariate": cfg.data.covariate_column,
            "numeric": numeric_columns(cfg),
            "categorical": {c: list(v) for c, v in cfg.data.categorical_features.items()},
            "features": feature_columns(cfg),
            "true_prob": TRUE_PROB_COLUMN if TRUE_PROB_COLUMN in df.columns else None,
        },
        "holdout_drift": cfg.data.synthetic.drift if cfg.data.source == "synthetic" else 0.0,
    }
    write_json(out_dir / META_FILE, meta)
    return {"out_dir": str(out_dir), "rows": meta["rows"], "data_version": meta["data_version"],
            "meta": str(out_dir / META_FILE)}


def load_split(cfg: Config, name: SplitName) -> pd.DataFrame:
    """One split written by ``run_features`` (DataError naming the file if it is missing)."""
    if name not in SPLITS:
        raise DataError(f"unknown split {name!r}; expected one of {list(SPLITS)}")
    path = Path(cfg.features.out_dir) / f"{name}.parquet"
    if not path.is_file():
        raise DataError(f"{path}: split not found; run `abx features` first")
    return read_table(path)


def read_meta(cfg: Config) -> dict[str, Any]:
    """The ``meta.json`` of the features stage (data version, rows, seed, columns)."""
    path = Path(cfg.features.out_dir) / META_FILE
    if not path.is_file():
        raise DataError(f"{path}: features metadata not found; run `abx features` first")
    return json.loads(path.read_text())
