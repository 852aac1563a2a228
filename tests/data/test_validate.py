"""The validate stage: the suite derived from params, and `abx validate` on corrupt inputs.

Every corrupt input goes through the real console-script entry point and must exit non-zero with
a message that names the problem and the column, and leave the result JSON behind.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from pipeline_components.config import Config
from pipeline_components.data import generate_synthetic
from pipeline_components.errors import DataError, DataValidationError
from pipeline_components.validate import build_specs, run_validate

from .conftest import CliResult


@pytest.fixture
def good(cfg: Config) -> pd.DataFrame:
    return generate_synthetic(cfg, n=300).drop(columns=["p_true"])


def test_specs_cover_params(cfg: Config, good: pd.DataFrame) -> None:
    specs = build_specs(cfg, good)
    names = {(n, kw.get("column")) for n, kw in specs}
    assert ("ExpectTableRowCountToBeBetween", None) in names
    assert ("ExpectColumnValuesToBeUnique", "user_id") in names
    assert ("ExpectColumnValuesToBeBetween", "pre_activity") in names
    assert ("ExpectColumnMeanToBeBetween", "converted") in names
    in_set = {kw["column"]: kw["value_set"] for n, kw in specs if n.endswith("ToBeInSet")}
    assert in_set["segment"] == ["new", "casual", "loyal"] and in_set["converted"] == [0, 1]
    # max_null_fraction 0 means "no nulls at all", not mostly=1.0 noise
    assert all("mostly" not in kw for _, kw in specs)


def test_specs_skip_checks_that_cannot_run(
    make_cfg: Callable[..., Config], good: pd.DataFrame
) -> None:
    cfg = make_cfg(**{"validation.max_null_fraction": 0.1})
    df = good.drop(columns=["x1"]).assign(x2="text")
    specs = build_specs(cfg, df)
    assert [n for n, kw in specs if kw.get("column") == "x1"] == ["ExpectColumnToExist"]
    assert ("ExpectColumnValuesToBeBetween", "x2") not in {(n, kw.get("column")) for n, kw in specs}
    assert {"column": "x0", "mostly": 0.9} in [kw for _, kw in specs]


def test_run_validate_passes_and_writes_json(cfg: Config, good: pd.DataFrame,
                                             tmp_path: Path) -> None:
    path = tmp_path / "good.parquet"
    good.to_parquet(path)
    out = run_validate(cfg, path)
    assert out["success"] is True and out["rows"] == 300 and out["evaluated"] > 30
    report = json.loads(Path(cfg.validation.report_path).read_text())
    assert report["success"] is True and report["failures"] == []


def test_run_validate_failure_lists_every_problem(cfg: Config, good: pd.DataFrame,
                                                  tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    good.assign(x0=good["x0"].where(good.index > 2), segment="vip").to_csv(path, index=False)
    with pytest.raises(DataValidationError) as exc:
        run_validate(cfg, path)
    msg = str(exc.value)
    assert "column 'x0' (numeric feature): expect_column_values_to_not_be_null" in msg
    assert "column 'segment' (categorical feature): expect_column_values_to_be_in_set" in msg
    assert "3 of 300 rows are null" in msg and "e.g. 'vip'" in msg
    report = json.loads(Path(cfg.validation.report_path).read_text())
    assert report["success"] is False and len(report["failures"]) == 2
    assert exc.value.report_path == str(cfg.validation.report_path)


def test_unreadable_file_still_writes_the_report(cfg: Config, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="run `abx data` first"):
        run_validate(cfg)  # the default target is the raw table, not generated yet
    with pytest.raises(DataError, match="file not found"):
        run_validate(cfg, tmp_path / "nope.csv")
    report = json.loads(Path(cfg.validation.report_path).read_text())
    assert report["success"] is False and "file not found" in report["error"]


Corruption = Callable[[pd.DataFrame], pd.DataFrame | bytes | None]

# case -> (file name, how to corrupt the good frame (a frame is written as CSV, bytes as they
# are, None writes nothing), substrings the error must contain)
CORRUPT: dict[str, tuple[str, Corruption, list[str]]] = {
    "missing column": ("f.csv", lambda g: g.drop(columns=["x3"]),
                       ["column 'x3' (numeric feature): missing"]),
    "wrong dtype": ("f.csv", lambda g: g.assign(x1=g["x1"].astype(str).where(g.index != 5, "ten")),
                    ["column 'x1'", "expect_column_values_to_be_in_type_list",
                     "expected a numeric type", "'ten'"]),
    "nulls": ("f.csv", lambda g: g.assign(pre_activity=g["pre_activity"].where(g.index % 10 > 0)),
              ["column 'pre_activity'", "not_be_null", "30 of 300 rows"]),
    "out of range": ("f.csv", lambda g: g.assign(x4=g["x4"].where(g.index != 7, 5e6)),
                     ["column 'x4'", "to_be_between", "1 of 300 rows", "5000000.0"]),
    "negative covariate": ("f.csv", lambda g: g.assign(pre_activity=-1.0),
                           ["column 'pre_activity' (covariate column)", "to_be_between"]),
    "unknown category": ("f.csv", lambda g: g.assign(device=g["device"].where(g.index > 3, "tv")),
                         ["column 'device'", "to_be_in_set", "4 of 300 rows", "'tv'"]),
    "duplicate ids": ("f.csv", lambda g: g.assign(user_id="u1"),
                      ["column 'user_id' (id column)", "to_be_unique"]),
    "target not binary": ("f.csv", lambda g: g.assign(converted=g["converted"] * 2),
                          ["column 'converted' (target column)", "to_be_in_set"]),
    "target rate": ("f.csv", lambda g: g.assign(converted=0),
                    ["column 'converted'", "expect_column_mean_to_be_between", "observed 0.0"]),
    "too few rows": ("f.csv", lambda g: g.head(20),
                     ["table: expect_table_row_count_to_be_between", "observed 20"]),
    "empty file": ("f.csv", lambda g: b"", ["f.csv: file is empty"]),
    "not csv/parquet": ("f.xlsx", lambda g: b"PK\x03\x04", ["f.xlsx: unsupported file type"]),
    "garbage parquet": ("f.parquet", lambda g: b"hello", ["f.parquet: not a readable Parquet"]),
    "missing file": ("absent.csv", lambda g: None, ["absent.csv: file not found"]),
}


@pytest.mark.parametrize("case", list(CORRUPT))
def test_cli_validate_rejects_corrupt_input(
    case: str, good: pd.DataFrame, tmp_path: Path, run_cli: Callable[..., CliResult]
) -> None:
    name, corrupt, expected = CORRUPT[case]
    path = tmp_path / "input" / name
    path.parent.mkdir()
    content = corrupt(good)
    if isinstance(content, pd.DataFrame):
        content.to_csv(path, index=False)
    elif content is not None:
        path.write_bytes(content)
    code, out, err = run_cli("validate", **{"data.source": "file", "data.path": str(path)})
    assert code in (DataError.exit_code, DataValidationError.exit_code), (code, out, err)
    for text in expected:
        assert text in err, f"{text!r} not in:\n{err}"
    assert "Traceback" not in err
    report = tmp_path / "validation" / "result.json"
    assert json.loads(report.read_text())["success"] is False


def test_cli_data_validate_features_happy_path(run_cli: Callable[..., CliResult],
                                               tmp_path: Path) -> None:
    for stage in ("data", "validate", "features"):
        code, out, err = run_cli(stage)
        assert code == 0, err
        assert out.startswith(f"{stage}: ")
    assert (tmp_path / "features" / "meta.json").is_file()
