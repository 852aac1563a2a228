"""The data stage: generate a synthetic prediction problem with known truth, or ingest a file.

Both sources end as one Parquet table at ``data.raw_path`` (the DVC-tracked raw data) with an id
column, numeric and categorical features, a pre-experiment covariate and a binary target.

The synthetic problem is built so an experiment's right answer is known:

* ``P(y=1)`` is a logistic function of the features with an interaction, a threshold and a
  quadratic term, so tree ensembles beat a linear model by a visible margin;
* the true probability is kept in the ``p_true`` column (synthetic data only), so the traffic
  simulator can draw live outcomes from the truth;
* the covariate is a noisy, non-negative copy of the true logit with correlation
  ``synthetic.covariate_correlation``, which is exactly what makes CUPED reduce variance;
* ``apply_drift`` shifts features of live traffic and recomputes the truth consistently.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline_components.config import Config
from pipeline_components.errors import DataError
from pipeline_components.fileio import atomic_path

TRUE_PROB_COLUMN = "p_true"
READABLE_SUFFIXES = (".csv", ".parquet", ".pq")
_COVARIATE_MEAN, _COVARIATE_SD = 10.0, 3.0


# --------------------------------------------------------------------------- column names
def numeric_columns(cfg: Config) -> list[str]:
    """Numeric feature names: ``data.numeric_features``, or x0..x{n-1} when that list is empty."""
    return cfg.data.numeric_columns


def categorical_columns(cfg: Config) -> list[str]:
    """Categorical feature names, in params.yaml order."""
    return list(cfg.data.categorical_features)


# --------------------------------------------------------------------------- ground truth
def _structural_logit(cfg: Config, df: pd.DataFrame) -> np.ndarray:
    """The part of the true logit that depends on features (the intercept is calibrated apart).

    Linear weights alternate in sign and decay; the first numeric features also enter through an
    interaction (x0*x1), a threshold (x2 > 0.8) and a centred quadratic (x3^2 - 1), which a
    linear model cannot represent.
    """
    num = numeric_columns(cfg)
    x = df[num].to_numpy(dtype=float)
    weights = np.array([0.8 * (-1) ** i / (1.0 + 0.3 * i) for i in range(len(num))])
    z = x @ weights
    if len(num) >= 2:
        z += 0.9 * x[:, 0] * x[:, 1]
    if len(num) >= 3:
        z += 1.0 * (x[:, 2] > 0.8)
    if len(num) >= 4:
        z -= 0.5 * (x[:, 3] ** 2 - 1.0)
    for col, cats in cfg.data.categorical_features.items():
        k = max(len(cats) - 1, 1)
        effect = {c: 0.8 * (i / k - 0.5) for i, c in enumerate(cats)}
        z += df[col].map(effect).fillna(0.0).to_numpy(dtype=float)
    return z


def _calibrate_intercept(z: np.ndarray, rate: float) -> float:
    """Intercept b with mean(sigmoid(b + z)) == rate, by bisection (monotone in b)."""
    lo, hi = -30.0, 30.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if float(np.mean(_sigmoid(mid + z))) < rate:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _sigmoid(z: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=float)))


# --------------------------------------------------------------------------- generation
def _draw_features(cfg: Config, n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Users with ids, standard-normal numeric features and skewed categorical shares."""
    num = numeric_columns(cfg)
    cols: dict[str, object] = {cfg.data.id_column: [f"u{i:07d}" for i in range(1, n + 1)]}
    x = rng.standard_normal((n, len(num)))
    for j, name in enumerate(num):
        cols[name] = np.round(x[:, j], 6)
    for name, cats in cfg.data.categorical_features.items():
        share = np.arange(len(cats), 0, -1, dtype=float)  # first category most common
        cols[name] = rng.choice(np.array(cats, dtype=object), size=n, p=share / share.sum())
    df = pd.DataFrame(cols)
    for name in cfg.data.categorical_features:
        df[name] = df[name].astype(str)
    return df


def generate_synthetic(cfg: Config, n: int | None = None) -> pd.DataFrame:
    """Deterministic synthetic users for ``experiment.seed`` (same seed, same table).

    Args:
        cfg: the config; ``data.synthetic`` sizes and shapes the problem.
        n: number of rows; defaults to ``data.synthetic.n_users``.

    Returns:
        One row per user: id, numeric and categorical features, the covariate (if configured),
        the binary target and ``p_true``, the true probability of the target.
    """
    syn = cfg.data.synthetic
    n = syn.n_users if n is None else n
    if n < 1:
        raise DataError(f"generate_synthetic: n must be >= 1, got {n}")
    rng = np.random.default_rng(cfg.experiment.seed)
    df = _draw_features(cfg, n, rng)
    z = _structural_logit(cfg, df)
    logit = _calibrate_intercept(z, syn.positive_rate) + z
    p = _sigmoid(logit)
    if cfg.data.covariate_column:
        rho = syn.covariate_correlation
        std = (logit - logit.mean()) / (logit.std() or 1.0)
        u = rho * std + np.sqrt(1.0 - rho**2) * rng.standard_normal(n)
        df[cfg.data.covariate_column] = np.round(
            np.clip(_COVARIATE_MEAN + _COVARIATE_SD * u, 0.0, None), 4
        )
    df[cfg.data.target_column] = (rng.random(n) < p).astype("int64")
    df[TRUE_PROB_COLUMN] = p
    return df


def apply_drift(cfg: Config, df: pd.DataFrame, drift: float | None = None) -> pd.DataFrame:
    """Shift live traffic's features and move the true probability and target with them.

    Every other numeric feature moves by ``drift`` standard deviations (so drift detectors have
    something to find and the champion's calibration degrades); ``p_true`` is updated by the
    change in the structural logit and the target is redrawn from it, seeded.

    Args:
        cfg: the config (seed, columns).
        df: synthetic rows with ``p_true`` (e.g. the holdout split).
        drift: shift in standard deviations; defaults to ``data.synthetic.drift``.
    """
    drift = cfg.data.synthetic.drift if drift is None else drift
    if drift == 0.0 or TRUE_PROB_COLUMN not in df.columns:
        return df.copy()
    out = df.copy()
    for name in numeric_columns(cfg)[::2]:
        out[name] = np.round(out[name].to_numpy(dtype=float) + drift, 6)
    p_old = np.clip(out[TRUE_PROB_COLUMN].to_numpy(dtype=float), 1e-12, 1 - 1e-12)
    logit = np.log(p_old / (1 - p_old)) + _structural_logit(cfg, out) - _structural_logit(cfg, df)
    out[TRUE_PROB_COLUMN] = _sigmoid(logit)
    rng = np.random.default_rng([cfg.experiment.seed, 1])
    out[cfg.data.target_column] = (rng.random(len(out)) < out[TRUE_PROB_COLUMN]).astype("int64")
    return out


# --------------------------------------------------------------------------- file I/O
def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV or Parquet file, turning every way it can fail into a DataError naming it."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: file not found")
    if not p.is_file():
        raise DataError(f"{p}: not a file")
    suffix = p.suffix.lower()
    if suffix not in READABLE_SUFFIXES:
        raise DataError(
            f"{p}: unsupported file type {suffix or '(no extension)'!r}; expected CSV (.csv) "
            "or Parquet (.parquet, .pq)"
        )
    if p.stat().st_size == 0:
        raise DataError(f"{p}: file is empty (0 bytes)")
    try:
        df = pd.read_csv(p) if suffix == ".csv" else pd.read_parquet(p)
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{p}: file is empty (no header, no rows)") from exc
    except Exception as exc:  # noqa: BLE001 - any parser failure means "not readable as <type>"
        kind = "CSV" if suffix == ".csv" else "Parquet"
        raise DataError(f"{p}: not a readable {kind} file: {type(exc).__name__}: {exc}") from exc
    if df.empty:
        raise DataError(f"{p}: file has a header but no data rows")
    return df


def file_hash(path: str | Path) -> str:
    """sha256 of a file's bytes: the data version recorded with every downstream output."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write Parquet atomically (tmp file + rename), so a crash never leaves half a file."""
    p = Path(path)
    with atomic_path(p) as tmp:
        df.to_parquet(tmp, index=False)
    return p


def load_source(cfg: Config) -> pd.DataFrame:
    """The configured source as a DataFrame: synthetic, or the user's file (ids as strings)."""
    if cfg.data.source == "synthetic":
        return generate_synthetic(cfg)
    assert cfg.data.path is not None  # guaranteed by DataConfig's validator
    df = read_table(cfg.data.path)
    if cfg.data.id_column in df.columns:
        df[cfg.data.id_column] = df[cfg.data.id_column].astype(str)
    for col in categorical_columns(cfg):  # categories are labels: text, nulls kept as nulls
        if col in df.columns and not pd.api.types.is_string_dtype(df[col]):
            df[col] = df[col].astype(object).where(df[col].isna(), df[col].astype(str))
    return df


def _check_described(cfg: Config, df: pd.DataFrame) -> None:
    """A file params.yaml does not describe at all (e.g. the synthetic defaults): say how to."""
    wanted = [cfg.data.id_column, cfg.data.target_column, *numeric_columns(cfg),
              *categorical_columns(cfg)]
    if not set(wanted) & set(df.columns):
        raise DataError(
            f"{cfg.data.path}: none of the columns params.yaml describes ({', '.join(wanted[:6])}"
            f"{', ...' if len(wanted) > 6 else ''}) is in the file (its columns: "
            f"{', '.join(map(str, df.columns[:8]))}{', ...' if len(df.columns) > 8 else ''}); "
            f"describe it with `abx init --data {cfg.data.path} --id COLUMN --target COLUMN`")


def run_data(cfg: Config) -> dict[str, object]:
    """Stage entry point: generate or ingest into ``data.raw_path``; return path, rows, version.

    A user's file is staged next to the raw table and validated first: the stored raw table is
    replaced only by data that passed (a bad file leaves the last good table intact).
    """
    df = load_source(cfg)
    raw = Path(cfg.data.raw_path)
    if cfg.data.source == "file":
        from pipeline_components.validate import run_validate

        _check_described(cfg, df)
        staged = write_table(df, raw.with_name(f"{raw.stem}.incoming{raw.suffix}"))
        try:
            run_validate(cfg, staged, label=cfg.data.path)
        except DataError:
            staged.unlink(missing_ok=True)
            raise
        path = staged.replace(raw)
    else:
        path = write_table(df, raw)
    return {
        "path": str(path),
        "rows": int(len(df)),
        "source": cfg.data.source,
        "data_version": file_hash(path),
    }
