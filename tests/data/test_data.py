"""The data stage: synthetic generator properties, drift, file ingest and its errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline

from pipeline_components.config import Config
from pipeline_components.data import (
    TRUE_PROB_COLUMN,
    apply_drift,
    file_hash,
    generate_synthetic,
    numeric_columns,
    read_table,
    run_data,
)
from pipeline_components.errors import DataError
from pipeline_components.features import build_preprocessor, feature_columns


def test_synthetic_is_deterministic_per_seed(make_cfg: Callable[..., Config]) -> None:
    a = generate_synthetic(make_cfg())
    pd.testing.assert_frame_equal(a, generate_synthetic(make_cfg()))
    b = generate_synthetic(make_cfg(**{"experiment.seed": 7}))
    assert not np.allclose(a["x0"], b["x0"])


def test_synthetic_columns_and_types(cfg: Config) -> None:
    df = generate_synthetic(cfg, n=300)
    d = cfg.data
    assert len(df) == 300
    assert df[d.id_column].is_unique and df[d.id_column].iloc[0] == "u0000001"
    for col in numeric_columns(cfg):
        assert pd.api.types.is_float_dtype(df[col])
    for col, cats in d.categorical_features.items():
        assert set(df[col]) <= set(cats)
    assert d.covariate_column is not None and (df[d.covariate_column] >= 0).all()
    assert set(df[d.target_column]) <= {0, 1}
    assert df[TRUE_PROB_COLUMN].between(0, 1).all()
    assert not df.isna().any().any()


def test_synthetic_base_rate_and_covariate_correlation(make_cfg: Callable[..., Config]) -> None:
    cfg = make_cfg(**{"data.synthetic.positive_rate": 0.3,
                      "data.synthetic.covariate_correlation": 0.7})
    df = generate_synthetic(cfg, n=20_000)
    # the intercept is calibrated on the sample, so the true rate is on target and y follows it
    assert df[TRUE_PROB_COLUMN].mean() == pytest.approx(0.3, abs=0.005)
    assert df[cfg.data.target_column].mean() == pytest.approx(0.3, abs=0.015)
    p = df[TRUE_PROB_COLUMN]
    corr = np.corrcoef(df["pre_activity"], np.log(p / (1 - p)))[0, 1]
    assert corr == pytest.approx(0.7, abs=0.03)


def test_no_covariate_column_when_disabled(make_cfg: Callable[..., Config]) -> None:
    df = generate_synthetic(make_cfg(**{"data.covariate_column": None}), n=200)
    assert "pre_activity" not in df.columns


def test_trees_beat_a_linear_model(cfg: Config) -> None:
    # the truth has an interaction, a threshold and a quadratic: the model choice must matter
    df = generate_synthetic(cfg, n=6000)
    x, y = df[feature_columns(cfg)], df[cfg.data.target_column]
    auc = {}
    for name, est in {"lin": LogisticRegression(max_iter=500),
                      "tree": HistGradientBoostingClassifier(max_iter=100)}.items():
        model = make_pipeline(build_preprocessor(cfg), est).fit(x[:4000], y[:4000])
        auc[name] = roc_auc_score(y[4000:], model.predict_proba(x[4000:])[:, 1])
    oracle = roc_auc_score(y[4000:], df[TRUE_PROB_COLUMN][4000:])
    assert auc["lin"] + 0.02 < auc["tree"] <= oracle + 0.01


def test_numeric_columns_default_to_x_names(make_cfg: Callable[..., Config]) -> None:
    cfg = make_cfg(**{"data.numeric_features": [], "data.synthetic.n_numeric": 3})
    assert numeric_columns(cfg) == ["x0", "x1", "x2"]
    assert {"x0", "x1", "x2"} <= set(generate_synthetic(cfg, n=150).columns)


def test_generate_rejects_zero_rows(cfg: Config) -> None:
    with pytest.raises(DataError, match="n must be >= 1"):
        generate_synthetic(cfg, n=0)


def test_drift_shifts_features_and_truth(cfg: Config) -> None:
    df = generate_synthetic(cfg, n=4000)
    pd.testing.assert_frame_equal(apply_drift(cfg, df, 0.0), df)
    drifted = apply_drift(cfg, df, 1.0)
    assert drifted["x0"].mean() - df["x0"].mean() == pytest.approx(1.0)
    assert (drifted["x1"] == df["x1"]).all()  # every other feature moves
    assert not np.allclose(drifted[TRUE_PROB_COLUMN], df[TRUE_PROB_COLUMN])
    pd.testing.assert_frame_equal(drifted, apply_drift(cfg, df, 1.0))
    # the redrawn target follows the new truth
    assert drifted["converted"].mean() == pytest.approx(drifted[TRUE_PROB_COLUMN].mean(), abs=0.03)


def test_run_data_synthetic_is_reproducible(cfg: Config) -> None:
    first = run_data(cfg)
    assert first["rows"] == 600 and Path(str(first["path"])).is_file()
    assert first["data_version"] == file_hash(cfg.data.raw_path)
    assert run_data(cfg)["data_version"] == first["data_version"]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_run_data_ingests_a_file(
    make_cfg: Callable[..., Config], tmp_path: Path, suffix: str
) -> None:
    src = generate_synthetic(make_cfg(), n=150)
    src["user_id"] = range(1000, 1150)  # integer ids in the user's file
    path = tmp_path / f"mine{suffix}"
    src.to_csv(path, index=False) if suffix == ".csv" else src.to_parquet(path)
    cfg = make_cfg(**{"data.source": "file", "data.path": str(path)})
    out = run_data(cfg)
    raw = read_table(out["path"])  # type: ignore[arg-type]
    assert out["source"] == "file" and len(raw) == 150
    assert raw["user_id"].iloc[0] == "1000"  # ids are labels: stored as strings
    assert np.allclose(raw["x0"], src["x0"])


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.csv", None, "file not found"),
        ("data.json", b'{"a": 1}', "unsupported file type '.json'"),
        ("noext", b"a,b\n1,2\n", "unsupported file type '(no extension)'"),
        ("empty.csv", b"", "file is empty"),
        ("blank.csv", b"\n\n", "file is empty"),
        ("header.csv", b"user_id,x0\n", "header but no data rows"),
        ("fake.parquet", b"user_id,x0\n1,2\n", "not a readable Parquet file"),
        ("bad.csv", b'a,b\n"1,2\n', "not a readable CSV file"),
    ],
)
def test_read_table_errors_name_the_file(
    tmp_path: Path, name: str, content: bytes | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError) as exc:
        read_table(path)
    assert str(path) in str(exc.value) and message in str(exc.value)


def test_read_table_rejects_a_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a file"):
        read_table(tmp_path)


def test_run_data_with_a_bad_file_keeps_the_stored_raw_table(
    make_cfg: Callable[..., Config], tmp_path: Path
) -> None:
    from pipeline_components.errors import DataValidationError

    good = tmp_path / "good.csv"
    generate_synthetic(make_cfg(), n=150).to_csv(good, index=False)
    cfg = make_cfg(**{"data.source": "file", "data.path": str(good)})
    before = run_data(cfg)["data_version"]
    bad = tmp_path / "bad.csv"
    generate_synthetic(make_cfg(), n=150).drop(columns=["x3"]).to_csv(bad, index=False)
    with pytest.raises(DataValidationError, match=r"bad.csv: data validation failed.*\n.*"
                                                  r"column 'x3' \(numeric feature\): missing"):
        run_data(make_cfg(**{"data.source": "file", "data.path": str(bad)}))
    assert file_hash(cfg.data.raw_path) == before  # the last good table is intact
    assert not list(Path(cfg.data.raw_path).parent.glob("*.incoming*"))


def test_a_file_params_does_not_describe_points_at_abx_init(
    make_cfg: Callable[..., Config], tmp_path: Path
) -> None:
    from tests.data.tables import penguins

    path = tmp_path / "penguins.csv"
    penguins().to_csv(path, index=False)
    with pytest.raises(DataError, match=r"penguins.csv: none of the columns params.yaml describes "
                       r"\(user_id, converted, x0, .*\) is in the file \(its columns: "
                       r"penguin_id, island, .*describe it with `abx init --data .*penguins.csv "
                       r"--id COLUMN --target COLUMN`"):
        run_data(make_cfg(**{"data.source": "file", "data.path": str(path)}))
