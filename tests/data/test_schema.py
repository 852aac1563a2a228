"""Schema inference (`infer_schema`, `abx init`) and per-column rules, on real public tables."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline_components.cli import main
from pipeline_components.config import load_config
from pipeline_components.errors import DataError, DataValidationError
from pipeline_components.schema import allowed_null_fraction, allowed_range, infer_schema
from pipeline_components.validate import run_validate
from tests.data.tables import cars, penguins

REPO = Path(__file__).resolve().parents[2]


def test_infer_cars_roles_types_long_tail_and_nulls() -> None:
    s = infer_schema(cars(), "car_id", "recent", max_categories=10)
    roles = {c.name: c.role for c in s.columns}
    assert roles["Name"] == "ignored"  # free text: one value per car, not a category
    assert roles["Origin"] == roles["brand"] == "categorical"
    assert s.numeric_features == ["Miles_per_Gallon", "Cylinders", "Displacement", "Horsepower",
                                  "Weight_in_lbs", "Acceleration"]
    brand = next(c for c in s.columns if c.name == "brand")
    assert len(brand.categories) == 10 and brand.capped and brand.n_distinct > 30
    assert brand.categories[:2] == ["ford", "chevrolet"]  # most frequent first
    assert 0.1 < brand.other_share < 0.5 and "-> other" in brand.note
    hp = next(c for c in s.columns if c.name == "Horsepower")
    assert hp.null_fraction == pytest.approx(6 / 406)
    assert hp.max_null_fraction == allowed_null_fraction(6 / 406) > hp.null_fraction
    assert hp.observed == (46.0, 230.0) and hp.range == (0.0, 414.0)


def test_allowed_ranges_and_null_shares() -> None:
    assert allowed_range(10.0, 20.0) == (0.0, 30.0)  # never negative: stays >= 0
    assert allowed_range(-5.0, 5.0) == (-15.0, 15.0)
    assert allowed_null_fraction(0.0) == 0.0 and allowed_null_fraction(0.02) == 0.04


@pytest.mark.parametrize(("mutate", "args", "message"), [
    (lambda d: d, ("nope", "adelie"), "--id 'nope': no such column"),
    (lambda d: d.assign(penguin_id="same"), ("penguin_id", "adelie"),
     "id column 'penguin_id': 343 duplicated ids"),
    (lambda d: d, ("penguin_id", "island"), "target column 'island': expected the two "
                                            "values 0 and 1, got 'Biscoe', 'Dream', 'Torgersen'"),
    (lambda d: d.assign(adelie=d["adelie"].where(d.index > 0)), ("penguin_id", "adelie"),
     "target column 'adelie': 1 rows without a label"),
])
def test_infer_errors_name_the_column(mutate, args, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        infer_schema(mutate(penguins()), *args)


def _abx(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["abx", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    return int(exc.value.code or 0)


def test_abx_init_writes_params_keeping_the_rest_of_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    penguins().to_csv("penguins.csv", index=False)
    shutil.copy(REPO / "params.yaml", "params.yaml")
    before = Path("params.yaml").read_text()
    assert _abx(monkeypatch, "init", "--data", "penguins.csv", "--id", "penguin_id",
                "--target", "adelie") == 0
    text = Path("params.yaml").read_text()
    for line in before.splitlines():  # every other section, comments included, is untouched
        if line.startswith(("training:", "serving:", "  guardrails:", "    max_latency_ms")):
            assert line in text
    assert "# real-time circuit breaker on the challenger" in text
    assert "sex: [male, female]" in text and "3.2% null (own level)" in text
    cfg = load_config("params.yaml", root=tmp_path)
    assert cfg.data.source == "file" and cfg.data.path == tmp_path / "penguins.csv"
    assert cfg.data.categorical_features == {"island": ["Biscoe", "Dream", "Torgersen"],
                                             "sex": ["male", "female"]}
    assert cfg.validation.columns["body_mass_mg"].range == (0.0, 9_900_000.0)
    assert cfg.nullable_features() == {"bill_length_mm", "bill_depth_mm", "flipper_length_mm",
                                       "body_mass_mg", "sex"}
    assert yaml.safe_load(text)["training"] == yaml.safe_load(before)["training"]


def test_per_column_rules_let_a_big_column_pass_that_the_global_range_fails(
    tmp_path: Path
) -> None:
    table = tmp_path / "penguins.parquet"
    penguins().to_parquet(table)
    s = infer_schema(pd.read_parquet(table), "penguin_id", "adelie")
    base = {"data.source": "file", "data.path": str(table), "data.id_column": "penguin_id",
            "data.target_column": "adelie", "data.covariate_column": None,
            "data.numeric_features": s.numeric_features,
            "data.categorical_features": s.categorical_features,
            "validation.report_path": str(tmp_path / "result.json"),
            "validation.max_null_fraction": 0.05}
    with pytest.raises(DataValidationError, match=r"column 'body_mass_mg' \(numeric feature\): "
                       r"expect_column_values_to_be_between \(min_value=-1000000.0, "
                       r"max_value=1000000.0\): 342 of 344 rows unexpected"):
        run_validate(load_config(REPO / "params.yaml", base))
    rules = {"validation.columns": {"body_mass_mg": {"range": [0, 1e7],
                                                     "max_null_fraction": 0.01}}}
    assert run_validate(load_config(REPO / "params.yaml", {**base, **rules}))["success"]
    strict = {"validation.columns": {"sex": {"max_null_fraction": 0.0}}}
    with pytest.raises(DataValidationError, match=r"column 'sex' \(categorical feature\): "
                       r"expect_column_values_to_not_be_null: 11 of 344 rows are null"):
        run_validate(load_config(REPO / "params.yaml", {**base, **rules, **strict}))
