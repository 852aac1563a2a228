"""The analysis stage: read the prediction log, run every check, return one Decision.

``analyze_frames`` is pure (frames in, Decision out) so tests build frames directly;
``analyze`` is the entry point the DAG, ``dvc repro`` and ``abx analyze`` call: it reads the store
at ``cfg.store_url`` for ``cfg.experiment.id`` and wraps ``analyze_frames``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import numpy.typing as npt
import pandas as pd
from sqlalchemy.engine import Engine

from pipeline_components.analysis import reasons as rs
from pipeline_components.analysis.clusters import attach_clusters, cluster_counts, unit_clusters
from pipeline_components.analysis.cupac import Scorer, cupac_covariates
from pipeline_components.analysis.decision import (
    Decision,
    Reason,
    VariantMetrics,
    overall_action,
    variant_verdict,
)
from pipeline_components.analysis.drift import (
    FeatureDrift,
    control_alarms,
    feature_drift,
    prediction_drift,
)
from pipeline_components.analysis.effects import (
    CONTROL,
    History,
    choose_covariate,
    compare_all,
    pre_period_covariates,
)
from pipeline_components.analysis.frames import Prepared, live_features, prepare
from pipeline_components.analysis.guardrails import (
    GuardrailResult,
    error_rate_guardrail,
    latency_guardrail,
)
from pipeline_components.analysis.phases import PhaseEffect, phase_effects, tag_phases
from pipeline_components.analysis.quality import model_quality
from pipeline_components.analysis.shadow import ShadowResult, shadow_compare
from pipeline_components.analysis.srm import SrmResult, srm_test
from pipeline_components.config import Config
from pipeline_components.errors import AnalysisError

_FAILED = ("error", "fallback")


def _rows(prep: Prepared, variant: str) -> pd.DataFrame:
    """Every logged row of a variant, served or shadow."""
    rows = pd.concat([prep.served, prep.shadow])
    return rows[rows["variant"] == variant]


def _pending(rows: pd.DataFrame) -> int:
    ok = rows[(rows["status"] == "ok") & rows["prediction"].notna()]
    return int(ok["outcome"].isna().sum())


def variant_metrics(prep: Prepared, variant: str) -> VariantMetrics:
    rows = _rows(prep, variant)
    lat = rows["latency_ms"].to_numpy(dtype=float)
    q = np.quantile(lat, [0.5, 0.95, 0.99]) if lat.size else [float("nan")] * 3
    vals = prep.unit_values[prep.unit_values["variant"] == variant]["value"]
    pending = _pending(rows)
    labelled = rows[(rows["status"] == "ok") & rows["outcome"].notna()]
    return VariantMetrics(
        variant=variant,
        units=int((prep.assignment["variant"] == variant).sum()),
        units_with_feedback=int(vals.size),
        requests=len(rows),
        pending=pending,
        primary_mean=float(vals.mean()) if vals.size else float("nan"),
        error_rate=float(rows["status"].isin(_FAILED).mean()) if len(rows) else float("nan"),
        latency_p50=float(q[0]), latency_p95=float(q[1]), latency_p99=float(q[2]),
        quality=model_quality(variant, labelled, pending),
    )


def unit_errors(rows: pd.DataFrame) -> tuple[npt.NDArray, npt.NDArray]:
    """(failed requests, requests) per unit: the user is the unit the guardrail counts in."""
    g = rows.assign(failed=rows["status"].isin(_FAILED)).groupby("unit_id")["failed"]
    return g.sum().to_numpy(dtype=float), g.size().to_numpy(dtype=float)


def guardrails(cfg: Config, prep: Prepared, variant: str, look: int = 1) -> list[GuardrailResult]:
    a, g = cfg.analysis, cfg.serving.guardrails
    c, t = _rows(prep, CONTROL), _rows(prep, variant)
    err = error_rate_guardrail(unit_errors(c), unit_errors(t), a.error_rate_margin, a.alpha,
                               variant)
    lat = latency_guardrail(c["latency_ms"], t["latency_ms"], a.latency_margin_ms, a.alpha,
                            g.latency_quantile, variant, look=look,
                            control_units=c["unit_id"], treatment_units=t["unit_id"])
    return [err, lat]


def srm_check(
    prep: Prepared, weights: dict[str, float], since: float | None, cfg: Config,
    clusters: pd.Series | None = None,
) -> SrmResult:
    """Units per variant against the weights; clusters when whole clusters were randomised."""
    units = prep.assignment
    if clusters is not None:
        tagged = attach_clusters(units, clusters)
        first = tagged.sort_values("first_ts").drop_duplicates("cluster")
        if cluster_counts(tagged) is not None:
            units = first
    if since is not None:
        units = units[units["first_ts"] >= since]
    counts = units["variant"].value_counts().to_dict()
    observed = {k: int(counts.get(k, 0)) for k in set(weights) | set(counts)}
    return srm_test(observed, weights, cfg.analysis.srm_p_threshold)


def drift_check(
    cfg: Config, prep: Prepared, reference: pd.DataFrame | None, variants: list[str],
    look: int = 1,
) -> list[FeatureDrift]:
    """Training vs each arm, champion vs each challenger, early vs late predictions; then Holm
    over all of them at the look's share of ``drift.p_threshold`` (``drift.control_alarms``)."""
    d = cfg.analysis.drift
    out: list[FeatureDrift] = []
    live = live_features(prep.served)
    cats = list(cfg.data.categorical_features)
    nums = cfg.data.numeric_columns  # x0..x{n-1} when the list is left empty
    arms = {v: live[live["variant"] == v] for v in sorted(set(live["variant"]))}
    for v, rows in arms.items():
        if reference is not None:
            out += feature_drift(reference, rows, v, nums, cats, d.psi_threshold, d.p_threshold,
                                 d.min_rows)
        if v != CONTROL and CONTROL in arms:
            out += feature_drift(arms[CONTROL], rows, v, nums, cats, d.psi_threshold,
                                 d.p_threshold, d.min_rows, against=CONTROL)
    for v in variants:
        pd_res = prediction_drift(_rows(prep, v), v, d.psi_threshold, d.p_threshold, d.min_rows)
        out += [pd_res] if pd_res else []
    return control_alarms(out, d.psi_threshold, d.p_threshold, look)


def shadow_check(cfg: Config, prep: Prepared) -> dict[str, ShadowResult]:
    if prep.shadow.empty:
        return {}
    champ = prep.served[prep.served["variant"] == CONTROL][["request_id", "prediction"]]
    out = {}
    for v, rows in prep.shadow.groupby("variant"):
        pairs = rows[["request_id", "unit_id", "outcome", "prediction"]].merge(
            champ.rename(columns={"prediction": "p_champion"}), on="request_id")
        pairs = pairs.rename(columns={"prediction": "p_challenger"})
        a = cfg.analysis
        tau2 = None if a.method == "fixed" else a.shadow_tau**2
        out[str(v)] = shadow_compare(pairs, a.alpha, tau2)
    return out


def analyze_frames(
    cfg: Config, predictions: pd.DataFrame, feedback: pd.DataFrame, *,
    expected_weights: dict[str, float], look: int = 1, srm_since_ts: float | None = None,
    covariates: pd.DataFrame | None = None, reference: pd.DataFrame | None = None,
    previous_fractions: History = None, max_looks: int | None = None,
    phase_starts: list[float] | None = None, champion_scorer: Scorer | None = None,
) -> Decision:
    """Analyse one experiment's rows and decide promote / rollback / continue.

    ``previous_fractions``: the information fractions recorded at earlier looks (per challenger
    as a dict, or one list); ``max_looks``: the caller's last look (a canary's ramp length),
    which spends all remaining alpha of a group-sequential test (default ``analysis.max_looks``);
    ``phase_starts``: when each ramp step began (two or more: the primary metric is
    post-stratified on the step in which units arrived, and per-step effects are reported);
    ``champion_scorer``: the champion's ``predict`` on raw feature mappings, for CUPAC
    (``analysis.cuped_covariate``: the champion's prediction of each unit's metric from its first
    request as the CUPED covariate, when no pre-period ``covariates`` exist).
    """
    a = cfg.analysis
    prep = prepare(predictions, feedback, a.primary_metric)
    seen = set(prep.served["variant"]) | set(prep.shadow["variant"])
    variants = [CONTROL, *sorted((seen | {k for k, w in expected_weights.items() if w > 0})
                                 - {CONTROL})]
    challengers = [v for v in variants if v != CONTROL]
    clusters = None
    if a.cluster_column:
        clusters = unit_clusters(prep.served, live_features(prep.served), a.cluster_column)
    srm = srm_check(prep, expected_weights, srm_since_ts, cfg, clusters)
    shadow = shadow_check(cfg, prep)
    values = prep.unit_values if clusters is None else attach_clusters(prep.unit_values, clusters)
    phases: list[PhaseEffect] = []
    if phase_starts and len(phase_starts) > 1:
        phases = phase_effects(prep.assignment, prep.unit_values, phase_starts, challengers,
                               a.alpha)
        if clusters is None:
            values = tag_phases(values, prep.assignment, phase_starts)
    with_x, label = choose_covariate(
        cfg, values, pre_period_covariates(covariates, cfg),
        lambda: None if champion_scorer is None else cupac_covariates(
            prep.served, champion_scorer, a.primary_metric))
    comparisons = compare_all(cfg, values, challengers, look=look, with_x=with_x,
                              covariate_label=label, previous_fractions=previous_fractions,
                              max_looks=max_looks)
    drift = drift_check(cfg, prep, reference, variants, look)
    metrics = {v: variant_metrics(prep, v) for v in variants}
    reasons: list[Reason] = rs.srm_reasons(srm)
    final = []
    for cmp in comparisons:
        guards = guardrails(cfg, prep, cmp.variant, look)
        shadow_only = cmp.variant in shadow and metrics[cmp.variant].units == 0
        mine = (rs.shadow_reasons(cmp.variant, shadow[cmp.variant]) if shadow_only
                else rs.effect_reasons(cmp, a.min_units_per_arm)) + rs.guardrail_reasons(guards)
        reasons += mine
        final.append(replace(cmp, guardrails=guards))
    reasons += rs.drift_reasons(drift, cfg)
    reasons += rs.pending_reasons({v: m.pending for v, m in metrics.items()})
    final = [replace(c, verdict=variant_verdict(reasons, c.variant)) for c in final]
    action, winner = overall_action(reasons, final)
    return Decision(
        experiment_id=cfg.experiment.id, action=action, reasons=reasons, metrics=metrics,
        comparisons=final, winner=winner, method=a.method, primary_metric=a.primary_metric,
        look=look, srm=srm, drift=drift, shadow=shadow, switched_units=prep.switched_units,
        phases=phases,
    )


def analyze(
    cfg: Config, *, expected_weights: dict[str, float], look: int = 1,
    srm_since_ts: float | None = None, covariates: pd.DataFrame | None = None,
    reference: pd.DataFrame | None = None, engine: Engine | None = None,
    previous_fractions: History = None, max_looks: int | None = None,
    phase_starts: list[float] | None = None, champion_scorer: Scorer | None = None,
) -> Decision:
    """Read ``cfg.store_url`` for ``cfg.experiment.id`` and analyse it (see ``analyze_frames``).

    Raises:
        AnalysisError: the store holds no prediction of this experiment id (a typo, or the
            canary never ran): an empty analysis would read as a harmless "continue".
    """
    from pipeline_components.store import make_engine, predictions, read_feedback, read_frame

    eng = engine if engine is not None else make_engine(cfg.store_url)
    preds = read_frame(eng, predictions, cfg.experiment.id)
    if preds.empty:
        raise AnalysisError(unknown_experiment_message(eng, cfg.experiment.id))
    fb = read_feedback(eng, cfg.experiment.id)
    return analyze_frames(
        cfg, preds, fb, expected_weights=expected_weights, look=look, srm_since_ts=srm_since_ts,
        covariates=covariates, reference=reference, previous_fractions=previous_fractions,
        max_looks=max_looks, phase_starts=phase_starts, champion_scorer=champion_scorer,
    )


def unknown_experiment_message(eng: Engine, experiment_id: str) -> str:
    """Name the missing id, the store, and a few ids the store does know."""
    from sqlalchemy import select

    from pipeline_components.store import predictions

    with eng.connect() as conn:
        known = sorted(str(r[0]) for r in conn.execute(
            select(predictions.c.experiment_id).distinct().limit(50)))
    url = eng.url.render_as_string(hide_password=True)
    have = ", ".join(known[:10]) + (" ..." if len(known) > 10 else "") if known else "none"
    return (f"experiment id {experiment_id!r}: no predictions in the store {url} "
            f"(experiments there: {have}); check --set experiment.id")
