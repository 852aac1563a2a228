"""The features stage: seeded split, preprocessor layout, outputs, data version."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline_components.config import Config
from pipeline_components.data import TRUE_PROB_COLUMN, file_hash, generate_synthetic, run_data
from pipeline_components.errors import DataError, DataValidationError
from pipeline_components.features import (
    SPLITS,
    build_preprocessor,
    dvc_md5,
    feature_columns,
    load_split,
    make_splits,
    read_meta,
    run_features,
    split_labels,
)
from pipeline_components.validate import run_validate


def test_feature_columns_numeric_then_categorical(cfg: Config) -> None:
    assert feature_columns(cfg) == [*cfg.data.numeric_features, *cfg.data.categorical_features]


def test_preprocessor_layout_and_unknown_categories(cfg: Config) -> None:
    df = generate_synthetic(cfg, n=400)
    pre = build_preprocessor(cfg).fit(df[feature_columns(cfg)])
    n_num = len(cfg.data.numeric_features)
    n_cats = sum(len(v) + 2 for v in cfg.data.categorical_features.values())  # + other, missing
    assert pre.transform(df[feature_columns(cfg)]).shape == (400, n_num + n_cats)
    names = list(pre.get_feature_names_out())
    assert names[n_num:n_num + 5] == ["segment_new", "segment_casual", "segment_loyal",
                                      "segment___other__", "segment___missing__"]
    row = df[feature_columns(cfg)].head(1).assign(segment="vip")  # a category never seen
    onehot = pre.transform(row)[0, n_num:n_num + 5]
    assert list(onehot) == [0, 0, 0, 1, 0]  # explicitly "other", not a silent all-zero row
    scaled = pre.transform(df[feature_columns(cfg)])[:, 0]
    assert scaled.mean() == pytest.approx(0, abs=1e-9)


def test_preprocessor_imputes_missing_values_in_any_container(cfg: Config) -> None:
    df = generate_synthetic(cfg, n=400)[feature_columns(cfg)]
    gappy = df.copy()
    gappy.loc[:9, "x0"] = np.nan
    gappy.loc[:9, "segment"] = None
    pre = build_preprocessor(cfg).fit(gappy)
    names = list(pre.get_feature_names_out())
    median = float(gappy["x0"].median())
    assert pre.named_transformers_["num"]["impute"].statistics_[0] == pytest.approx(median)
    row = {**df.iloc[0].to_dict(), "x0": None, "segment": None}
    as_frame = pre.transform(pd.DataFrame([row]))
    from pipeline_components.serving.fastpath import numpy_ready  # the router's numpy rows

    fast = numpy_ready(pre, feature_columns(cfg))
    as_objects = fast.transform(np.array([[row[c] for c in feature_columns(cfg)]], dtype=object))
    assert np.allclose(as_frame, as_objects) and not np.isnan(as_frame).any()
    scaler = pre.named_transformers_["num"]["scale"]
    assert as_frame[0, 0] == pytest.approx((median - scaler.mean_[0]) / scaler.scale_[0])
    assert as_frame[0, names.index("segment___missing__")] == 1.0


def test_preprocessor_without_scaling_passes_numerics(make_cfg: Callable[..., Config]) -> None:
    cfg = make_cfg(**{"features.scale_numeric": False})
    df = generate_synthetic(cfg, n=100)
    out = build_preprocessor(cfg).fit_transform(df[feature_columns(cfg)])
    assert np.allclose(out[:, 0], df["x0"])


def test_split_is_keyed_stable_and_sized() -> None:
    ids = pd.Series([f"u{i}" for i in range(20_000)])
    labels = split_labels(ids, "salt-a", holdout=0.3, validation=0.2)
    shares = pd.Series(labels).value_counts(normalize=True)
    assert shares["holdout"] == pytest.approx(0.3, abs=0.015)
    assert shares["validation"] == pytest.approx(0.7 * 0.2, abs=0.015)
    # a user's split depends on (salt, id) only: order and neighbours do not matter
    shuffled = ids.sample(frac=1.0, random_state=1)
    assert (split_labels(shuffled, "salt-a", 0.3, 0.2) == labels[shuffled.index]).all()
    assert (split_labels(ids.head(50), "salt-a", 0.3, 0.2) == labels[:50]).all()
    assert (split_labels(ids, "salt-b", 0.3, 0.2) != labels).mean() > 0.3


def test_the_holdout_does_not_move_with_the_seed(make_cfg: Callable[..., Config]) -> None:
    a, b = (make_splits(c, generate_synthetic(c)) for c in
            (make_cfg(), make_cfg(**{"experiment.seed": 7})))
    assert list(a["holdout"]["user_id"]) == list(b["holdout"]["user_id"])
    seen_a = set(a["train"]["user_id"]) | set(a["validation"]["user_id"])
    assert not seen_a & set(b["holdout"]["user_id"])


def test_make_splits_partition_and_keep_columns(cfg: Config) -> None:
    df = generate_synthetic(cfg).assign(extra="dropped")
    parts = make_splits(cfg, df)
    ids = [set(parts[s][cfg.data.id_column]) for s in SPLITS]
    assert sum(map(len, ids)) == len(df) and set().union(*ids) == set(df[cfg.data.id_column])
    for part in parts.values():
        assert {cfg.data.id_column, "pre_activity", "converted", TRUE_PROB_COLUMN} <= set(part)
        assert "extra" not in part.columns


def test_drift_applies_to_the_holdout_only(make_cfg: Callable[..., Config]) -> None:
    plain, drifted = (make_splits(c, generate_synthetic(c)) for c in
                      (make_cfg(), make_cfg(**{"data.synthetic.drift": 1.0})))
    pd.testing.assert_frame_equal(plain["train"], drifted["train"])
    assert drifted["holdout"]["x0"].mean() - plain["holdout"]["x0"].mean() == pytest.approx(1.0)


def test_run_features_writes_splits_and_meta(cfg: Config) -> None:
    run_data(cfg)
    run_validate(cfg)
    out = run_features(cfg)
    meta = read_meta(cfg)
    assert meta["data_version"] == {"sha256": file_hash(cfg.data.raw_path), "dvc_md5": None}
    assert out["rows"] == meta["rows"] and sum(meta["rows"].values()) == 600
    assert meta["seed"] == cfg.experiment.seed
    assert meta["columns"]["features"] == feature_columns(cfg)
    train = load_split(cfg, "train")
    assert len(train) == meta["rows"]["train"]
    before = {s: file_hash(Path(cfg.features.out_dir) / f"{s}.parquet") for s in SPLITS}
    run_features(cfg)  # a rerun (an Airflow retry) writes the same bytes
    assert before == {s: file_hash(Path(cfg.features.out_dir) / f"{s}.parquet") for s in SPLITS}


def test_make_splits_names_missing_columns(cfg: Config) -> None:
    with pytest.raises(DataError, match=r"lacks column\(s\) \['x2'\]"):
        make_splits(cfg, generate_synthetic(cfg, n=200).drop(columns=["x2"]))


def test_features_refuse_unvalidated_failed_or_changed_data(cfg: Config) -> None:
    run_data(cfg)
    with pytest.raises(DataError, match=r"not validated \(.*result.json not found\); run `abx "
                                        r"validate` first"):
        run_features(cfg)
    raw = Path(cfg.data.raw_path)
    generate_synthetic(cfg, n=200).drop(columns=["x2"]).to_parquet(raw)
    with pytest.raises(DataValidationError):
        run_validate(cfg)
    with pytest.raises(DataValidationError, match=r"refusing to continue, data validation "
                                                  r"failed .*column 'x2'.*missing"):
        run_features(cfg)
    assert not (Path(cfg.features.out_dir) / "train.parquet").exists()
    run_data(cfg)  # good data again, but the report still describes the bad bytes
    with pytest.raises(DataError, match="changed since it was validated"):
        run_features(cfg)


def test_load_split_and_meta_errors(cfg: Config) -> None:
    with pytest.raises(DataError, match="run `abx data` and `abx validate` first"):
        run_features(cfg)
    with pytest.raises(DataError, match="run `abx features` first"):
        load_split(cfg, "holdout")
    with pytest.raises(DataError, match="meta.json"):
        read_meta(cfg)
    with pytest.raises(DataError, match="unknown split 'test'"):
        load_split(cfg, "test")  # type: ignore[arg-type]


def test_dvc_md5_reads_dvc_lock(tmp_path: Path) -> None:
    lock = tmp_path / "dvc.lock"
    assert dvc_md5("data/raw/users.parquet", lock) is None
    lock.write_text(json.dumps({"schema": "2.0", "stages": {"data": {"cmd": "abx data", "outs": [
        {"path": "data/raw/users.parquet", "hash": "md5", "md5": "abc123", "size": 1}]}}}))
    assert dvc_md5("data/raw/users.parquet", lock) == "abc123"
    assert dvc_md5("data/raw/other.parquet", lock) is None
