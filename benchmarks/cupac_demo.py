"""CUPAC vs the pre-period covariate vs no adjustment on the demo data (issue 14).

The demo world of ``params.yaml``: ``generate_synthetic`` users split by ``make_splits``; a
champion (the project's preprocessor + logistic regression) and a challenger (preprocessor +
sklearn's HistGradientBoosting) trained on the train split; the holdout users are the live traffic,
randomised 50/50 and served once each (the challenger arm by the challenger: a real A/B). The
primary metric is ``reward`` (1 when the served act/no-act decision was right,
``simulate.reward_of``) or ``outcome`` (the label). Each split goes through ``analyze_frames``
three times: ``cuped: false``; ``cuped_covariate: pre_period`` with ``pre_activity``; and
``cuped_covariate: cupac`` with the champion's scorer. Printed per metric and covariate: the
achieved variance reduction of the difference (1 - Var_adj/Var, ``Comparison.cuped``) and the
interval width relative to the unadjusted one, mean and range over the random splits.
Run: ``python -m benchmarks cupac_demo [--splits N]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from pipeline_components.analysis import analyze_frames
from pipeline_components.config import Config, load_config
from pipeline_components.data import generate_synthetic
from pipeline_components.experiment.simulate import reward_of
from pipeline_components.features import build_preprocessor, feature_columns, make_splits

HALF = {"champion": 0.5, "challenger": 0.5}


def _models(cfg: Config, train: pd.DataFrame) -> tuple[Pipeline, Pipeline]:
    cols, y = feature_columns(cfg), train[cfg.data.target_column]
    champ = Pipeline([("pre", build_preprocessor(cfg)), ("m", LogisticRegression(max_iter=500))])
    chall = Pipeline([("pre", build_preprocessor(cfg)),
                      ("m", HistGradientBoostingClassifier(random_state=0))])
    return champ.fit(train[cols], y), chall.fit(train[cols], y)


def _log(cfg: Config, holdout: pd.DataFrame, p_served: npt.NDArray, variant: npt.NDArray
         ) -> tuple[pd.DataFrame, pd.DataFrame]:
    cols, n = feature_columns(cfg), len(holdout)
    label = holdout[cfg.data.target_column].to_numpy()
    preds = pd.DataFrame({
        "ts": np.arange(n, dtype=float), "request_id": [f"r{i}" for i in range(n)],
        "unit_id": holdout[cfg.data.id_column].astype(str).to_numpy(), "variant": variant,
        "prediction": p_served, "latency_ms": 5.0, "status": "ok", "served": True,
        "features": holdout[cols].to_dict("records")})
    fb = pd.DataFrame({"ts": preds["ts"] + 1, "request_id": preds["request_id"],
                       "unit_id": preds["unit_id"], "outcome": label.astype(float),
                       "reward": [reward_of(p, y) for p, y in zip(p_served, label, strict=True)]})
    return preds, fb


def measure(splits: int, seed: int) -> list[str]:
    base = load_config("params.yaml")
    df = generate_synthetic(base)
    parts = make_splits(base, df)
    champ, chall = _models(base, parts["train"])
    holdout = parts["holdout"]
    cols = feature_columns(base)
    p_champ = champ.predict_proba(holdout[cols])[:, 1]
    p_chall = chall.predict_proba(holdout[cols])[:, 1]

    def scorer(rows: Sequence[Mapping[str, Any]]) -> npt.NDArray[np.float64]:
        return np.asarray(champ.predict_proba(pd.DataFrame(list(rows))[cols])[:, 1], dtype=float)

    pre = holdout[[base.data.id_column, base.data.covariate_column or "pre_activity"]]
    rng = np.random.default_rng(seed)
    out: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for _ in range(splits):
        treat = rng.random(len(holdout)) < 0.5
        variant = np.where(treat, "challenger", "champion")
        preds, fb = _log(base, holdout, np.where(treat, p_chall, p_champ), variant)
        for metric in ("reward", "outcome"):
            kw = {"analysis.primary_metric": metric, "analysis.metric_type": "binary",
                  "analysis.method": "fixed"}
            plain = analyze_frames(load_config("params.yaml", {**kw, "analysis.cuped": False}),
                                   preds, fb, expected_weights=HALF).comparisons[0].effect
            w0 = plain.ci[1] - plain.ci[0]
            for name, extra, args in (
                    ("pre_period (pre_activity)", {"analysis.cuped_covariate": "pre_period"},
                     {"covariates": pre}),
                    ("cupac (champion score)", {"analysis.cuped_covariate": "cupac"},
                     {"champion_scorer": scorer})):
                cfg = load_config("params.yaml", {**kw, **extra})
                cmp = analyze_frames(cfg, preds, fb, expected_weights=HALF, **args).comparisons[0]
                red = cmp.cuped.variance_reduction if cmp.cuped else float("nan")
                out.setdefault((metric, name), []).append(
                    (red, (cmp.effect.ci[1] - cmp.effect.ci[0]) / w0))
    lines = [f"cupac_demo: params.yaml demo data, {len(holdout)} holdout users per split, "
             f"{splits} random 50/50 splits (challenger arm served by the challenger)",
             f"corr(champion score, label) = "
             f"{np.corrcoef(p_champ, holdout[base.data.target_column])[0, 1]:.3f}", "",
             "| metric | covariate | variance reduction, mean (min-max) | CI width / unadjusted |",
             "| --- | --- | --- | --- |"]
    for (metric, name), vals in out.items():
        r, w = np.array(vals).T
        lines.append(f"| {metric} | {name} | {r.mean():.1%} ({r.min():.1%}-{r.max():.1%}) | "
                     f"{w.mean():.3f} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks cupac_demo", description=__doc__)
    ap.add_argument("--splits", type=int, default=10)
    ap.add_argument("--seed", type=int, default=20261202)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    for line in measure(args.splits, args.seed):
        print(line, flush=True)
    print(f"\n(cupac_demo took {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
