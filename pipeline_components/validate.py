"""The validate stage: a Great Expectations suite derived from params.yaml, run on the raw table.

The suite is built as plain ``(expectation class name, kwargs)`` specs (pure, testable without
GX), then run in an ephemeral GX context. The result JSON is written pass or fail, and a failure
raises ``DataValidationError`` with one readable line per failed expectation: which check, which
column, how many rows and a few example values, so nothing downstream runs on bad data.

great_expectations takes seconds to import, so it is imported inside the functions that need it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline_components.config import Config
from pipeline_components.data import categorical_columns, file_hash, numeric_columns, read_table
from pipeline_components.errors import DataError, DataValidationError
from pipeline_components.fileio import write_json

Spec = tuple[str, dict[str, Any]]
NUMERIC_TYPES = [
    *(f"int{b}" for b in (8, 16, 32, 64)), *(f"uint{b}" for b in (8, 16, 32, 64)),
    *(f"Int{b}" for b in (8, 16, 32, 64)), "float16", "float32", "float64", "Float32", "Float64",
]
MAX_EXAMPLES = 5


def required_columns(cfg: Config) -> dict[str, str]:
    """Every column the stage needs, mapped to its role (used in missing-column messages)."""
    roles = {cfg.data.id_column: "id column", cfg.data.target_column: "target column"}
    if cfg.data.covariate_column:
        roles[cfg.data.covariate_column] = "covariate column"
    roles.update({c: "numeric feature" for c in numeric_columns(cfg)})
    roles.update({c: "categorical feature" for c in categorical_columns(cfg)})
    return roles


def _numeric_specs(col: str, df: pd.DataFrame, lo: float, hi: float, mostly: float) -> list[Spec]:
    specs: list[Spec] = [("ExpectColumnValuesToBeInTypeList",
                          {"column": col, "type_list": NUMERIC_TYPES})]
    specs.append(("ExpectColumnValuesToNotBeNull", {"column": col, "mostly": mostly}))
    if pd.api.types.is_numeric_dtype(df[col]):  # a range check on text would only raise
        specs.append(("ExpectColumnValuesToBeBetween",
                      {"column": col, "min_value": lo, "max_value": hi}))
    return specs


def build_specs(cfg: Config, df: pd.DataFrame) -> list[Spec]:
    """The suite for ``df``: columns, types, nulls, ranges, categories, rows, target balance.

    Ranges, null fractions and whether a categorical's long tail is allowed come per column from
    ``validation.columns.<col>`` when set there, else from the global defaults. Columns absent
    from ``df`` get only ``ExpectColumnToExist`` (which fails), so one run reports every problem
    without GX raising on the missing ones.
    """
    v, d = cfg.validation, cfg.data
    specs: list[Spec] = [("ExpectTableRowCountToBeBetween", {"min_value": v.min_rows})]
    present = set(df.columns)
    specs += [("ExpectColumnToExist", {"column": c}) for c in required_columns(cfg)]
    if d.id_column in present:
        specs += [("ExpectColumnValuesToNotBeNull", {"column": d.id_column}),
                  ("ExpectColumnValuesToBeUnique", {"column": d.id_column})]
    for col in numeric_columns(cfg):
        if col in present:
            specs += _numeric_specs(col, df, *v.value_range(col, v.numeric_range),
                                    1.0 - v.null_fraction(col))
    if d.covariate_column and d.covariate_column in present:
        col = d.covariate_column
        specs += _numeric_specs(col, df, *v.value_range(col, v.covariate_range),
                                1.0 - v.null_fraction(col))
    for col, cats in d.categorical_features.items():
        if col in present:
            specs.append(("ExpectColumnValuesToNotBeNull",
                          {"column": col, "mostly": 1.0 - v.null_fraction(col)}))
            if not v.allows_other(col):
                specs.append(("ExpectColumnValuesToBeInSet",
                              {"column": col, "value_set": list(cats)}))
    t = d.target_column
    if t in present:
        specs += [("ExpectColumnValuesToNotBeNull", {"column": t}),
                  ("ExpectColumnValuesToBeInSet", {"column": t, "value_set": [0, 1]})]
        if pd.api.types.is_numeric_dtype(df[t]):
            lo, hi = v.target_rate_range
            specs.append(("ExpectColumnMeanToBeBetween",
                          {"column": t, "min_value": lo, "max_value": hi}))
    return [(name, {k: val for k, val in kw.items() if k != "mostly" or val < 1.0})
            for name, kw in specs]


def run_suite(specs: list[Spec], df: pd.DataFrame) -> dict[str, Any]:
    """Run the specs on ``df`` in an ephemeral GX context; return the result as a JSON dict."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    batch = (ctx.data_sources.add_pandas("pandas").add_dataframe_asset(name="raw")
             .add_batch_definition_whole_dataframe("whole"))
    # Build the suite whole: add_expectation() re-serialises the stored suite on every call.
    expectations = [getattr(gx.expectations, name)(**kwargs) for name, kwargs in specs]
    suite = ctx.suites.add(gx.ExpectationSuite(name="abx_raw", expectations=expectations))
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(name="abx", data=batch,
                                                                suite=suite))
    return vd.run(batch_parameters={"dataframe": df}).to_json_dict()


def _examples(values: list[Any]) -> str:
    """A few distinct values, strings quoted, without brackets (the CLI prints rich markup)."""
    shown = list(dict.fromkeys(repr(v) if isinstance(v, str) else str(v) for v in values))
    return ", ".join(shown[:MAX_EXAMPLES])


def _non_numeric_examples(series: pd.Series) -> str:
    bad = series[pd.to_numeric(series, errors="coerce").isna() & series.notna()]
    return _examples(bad.drop_duplicates().head(MAX_EXAMPLES).tolist())


def describe_failure(res: dict[str, Any], df: pd.DataFrame, roles: dict[str, str]) -> str:
    """One readable line for a failed expectation result: check, column, rows, examples."""
    conf = res["expectation_config"]
    kind, kw = conf["type"], dict(conf["kwargs"])
    col = kw.pop("column", None)
    kw.pop("batch_id", None)
    where = f"column {col!r} ({roles.get(col, 'column')})" if col else "table"
    args = ", ".join(f"{k}={v}" for k, v in kw.items() if k != "type_list")
    line = f"{where}: {kind}" + (f" ({args})" if args else "")  # no [..]: the CLI prints markup
    r = res.get("result") or {}
    if kind == "expect_column_to_exist":
        return f"{where}: missing (required column not in the file)"
    if r.get("unexpected_count") and kind == "expect_column_values_to_not_be_null":
        line += f": {r['unexpected_count']} of {r.get('element_count')} rows are null"
    elif r.get("unexpected_count"):
        line += (f": {r['unexpected_count']} of {r.get('element_count')} rows unexpected, "
                 f"e.g. {_examples(r.get('partial_unexpected_list') or [])}")
    elif "observed_value" in r:
        seen = r["observed_value"]
        line += f": observed {seen!r}" if isinstance(seen, str) else f": observed {seen}"
        if kind == "expect_column_values_to_be_in_type_list" and col in df.columns:
            line += f" (expected a numeric type), e.g. {_non_numeric_examples(df[col])}"
    exc = res.get("exception_info") or {}
    if exc.get("raised_exception"):
        line += f": check could not run: {exc.get('exception_message')}"
    return line


def default_path(cfg: Config) -> Path:
    """What ``abx validate`` checks by default: the raw table once ingested, else your file."""
    raw = Path(cfg.data.raw_path)
    if cfg.data.source == "file" and cfg.data.path is not None and not raw.exists():
        return Path(cfg.data.path)
    return raw


def run_validate(
    cfg: Config, path: str | Path | None = None, *, label: str | Path | None = None
) -> dict[str, Any]:
    """Stage entry point: validate a CSV/Parquet file, always write the result JSON.

    The report records the sha256 of the bytes it checked, so the features stage can refuse a
    raw table that was not validated, failed, or changed since (``require_validated``).

    Args:
        cfg: the config (suite parameters, ``validation.report_path``).
        path: file to check; defaults to ``default_path(cfg)``.
        label: the name messages use for the file (the data stage validates a staged copy of
            the user's file before it replaces the raw table, and names the user's file).

    Returns:
        ``{"path", "report_path", "success", "evaluated", "rows", "sha256"}``.

    Raises:
        DataError: the file is missing, empty or not CSV/Parquet (the JSON records why).
        DataValidationError: an expectation failed; the message lists every failure.
    """
    target = Path(path) if path is not None else default_path(cfg)
    name = str(label or target)
    report_path = Path(cfg.validation.report_path)
    try:
        if target == Path(cfg.data.raw_path) and not target.exists():
            raise DataError(f"{target}: file not found; run `abx data` first")
        df = read_table(target)
    except DataError as exc:
        write_json(report_path, {"success": False, "path": name, "error": str(exc)})
        raise
    sha = file_hash(target)
    result = run_suite(build_specs(cfg, df), df)
    roles = required_columns(cfg)
    failed = [r for r in result["results"] if not r["success"]]
    failures = [describe_failure(r, df, roles) for r in failed]
    stats = result.get("statistics", {})
    write_json(report_path, {"success": not failed, "path": name, "sha256": sha, "rows": len(df),
                             "statistics": stats, "failures": failures, "gx_result": result})
    if failed:
        head = (f"{name}: data validation failed, {len(failed)} of "
                f"{stats.get('evaluated_expectations')} expectations (result: {report_path})")
        raise DataValidationError("\n".join([head, *(f"  - {f}" for f in sorted(failures))]),
                                  report_path=str(report_path))
    return {"path": name, "report_path": str(report_path), "success": True,
            "evaluated": stats.get("evaluated_expectations"), "rows": len(df), "sha256": sha}


def require_validated(cfg: Config, path: str | Path) -> dict[str, Any]:
    """The passing validation report of exactly these bytes, or an error saying why not.

    Later stages call this first, so they never run on data that failed validation, was never
    validated, or changed after it passed.

    Raises:
        DataError: no report yet, or the report is for other bytes (rerun ``abx validate``).
        DataValidationError: the last validation of this file failed.
    """
    report_path = Path(cfg.validation.report_path)
    if not report_path.is_file():
        raise DataError(f"{path}: not validated ({report_path} not found); "
                        "run `abx validate` first")
    report = json.loads(report_path.read_text())
    sha = file_hash(path)
    if not report.get("success") and report.get("sha256") in (None, sha):
        why = report.get("error") or "; ".join(report.get("failures", [])[:3])
        raise DataValidationError(f"{path}: refusing to continue, data validation failed "
                                  f"({report_path}): {why}", report_path=str(report_path))
    if report.get("sha256") != sha:
        raise DataError(f"{path}: changed since it was validated ({report_path} is for another "
                        "version of the data); run `abx validate` again")
    return report
