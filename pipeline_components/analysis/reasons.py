"""Turn test results into the decision's reasons (each with a readable message)."""

from __future__ import annotations

from pipeline_components.analysis import codes
from pipeline_components.analysis.decision import Comparison, Reason
from pipeline_components.analysis.drift import FeatureDrift
from pipeline_components.analysis.fixed import EffectResult
from pipeline_components.analysis.guardrails import GuardrailResult
from pipeline_components.analysis.shadow import ShadowResult
from pipeline_components.analysis.srm import SrmResult
from pipeline_components.config import Config

_GUARD_CODES = {"error_rate": codes.GUARDRAIL_ERROR_RATE}


def srm_reasons(srm: SrmResult | None) -> list[Reason]:
    """A mismatch rolls back; a split that cannot be tested yet blocks promotion (keep going)."""
    if srm is not None and srm.reason == codes.NOT_ENOUGH_DATA:
        exp = ", ".join(f"{k}={v:.1f}" for k, v in sorted(srm.expected.items()))
        return [Reason(codes.NOT_ENOUGH_DATA, f"sample ratio cannot be tested yet: expected units "
                       f"{exp}, need >= 5 per arm", True)]
    if srm is None or not srm.mismatch:
        return []
    obs = ", ".join(f"{k}={v}" for k, v in sorted(srm.observed.items()))
    exp = ", ".join(f"{k}={v:.1f}" for k, v in sorted(srm.expected.items()))
    extra = f"; traffic in unconfigured variant(s) {srm.unexpected}" if srm.unexpected else ""
    msg = f"sample ratio mismatch (p={srm.p_value:.2g}): observed units {obs}, "
    msg += f"expected {exp}{extra}"
    return [Reason(codes.SRM, msg, True)]


def _fmt(e: EffectResult) -> str:
    return (f"lift {e.lift:+.4g} [{e.ci[0]:+.4g}, {e.ci[1]:+.4g}], relative {e.rel_lift:+.2%} "
            f"[{e.rel_ci[0]:+.2%}, {e.rel_ci[1]:+.2%}], p={e.p_value:.3g} ({e.method})")


def effect_reasons(cmp: Comparison, min_units: int) -> list[Reason]:
    e, v = cmp.effect, cmp.variant
    if e.reason or min(e.n_control, e.n_treatment) < min_units:
        why = f" ({e.reason})" if e.reason else ""
        return [Reason(codes.NOT_ENOUGH_DATA, f"{e.n_control} champion and {e.n_treatment} {v} "
                       f"units with feedback; need {min_units} per arm{why}", True, v)]
    if e.significant and e.lift > 0:
        return [Reason(codes.EFFECT_POSITIVE, f"{v} is better: {_fmt(e)}", False, v)]
    if e.significant:
        return [Reason(codes.EFFECT_NEGATIVE, f"{v} is worse: {_fmt(e)}", True, v)]
    if e.details.get("final"):
        return [Reason(codes.NO_EFFECT_AT_HORIZON, f"no significant effect at the planned "
                       f"horizon: {_fmt(e)}", True, v)]
    if e.details.get("futile"):
        return [Reason(codes.FUTILITY, f"{v} cannot be shown better (z {e.details['z']:.2f} <= "
                       f"futility bound {e.details['futility_bound']:.2f}): {_fmt(e)}", True, v)]
    return [Reason(codes.EFFECT_INCONCLUSIVE, f"no decision yet: {_fmt(e)}", True, v)]


def guardrail_reasons(results: list[GuardrailResult]) -> list[Reason]:
    out = []
    for g in results:
        what = (f"{g.name}: {g.variant} {g.treatment_value:.4g} vs champion {g.control_value:.4g}"
                f" (margin {g.margin:g})")
        if g.status == "breach":
            code = _GUARD_CODES.get(g.name, codes.GUARDRAIL_LATENCY)
            out.append(Reason(code, f"guardrail breached, {what}", True, g.variant))
        elif g.status == "inconclusive":
            why = f" ({g.reason})" if g.reason else ""
            out.append(Reason(codes.GUARDRAIL_UNPROVEN, f"non-inferiority not shown yet, "
                              f"{what}{why}", True, g.variant))
    return out


def shadow_reasons(variant: str, res: ShadowResult) -> list[Reason]:
    what = (f"paired log-loss difference {res.log_loss_diff:+.4g} [{res.ci[0]:+.4g}, "
            f"{res.ci[1]:+.4g}] over {res.n_units} units, p={res.p_value:.3g}; McNemar "
            f"p={res.mcnemar_p:.3g}")
    if res.reason:
        return [Reason(codes.NOT_ENOUGH_DATA, f"shadow comparison of {variant}: {res.n_units} "
                       f"labelled units ({res.reason})", True, variant)]
    if res.direction > 0:
        msg = f"{variant} (shadow) is better: {what}"
        return [Reason(codes.SHADOW_BETTER, msg, False, variant)]
    if res.direction < 0:
        return [Reason(codes.SHADOW_WORSE, f"{variant} (shadow) is worse: {what}", True, variant)]
    return [Reason(codes.EFFECT_INCONCLUSIVE, f"{variant} (shadow): {what}", True, variant)]


def drift_reasons(drift: list[FeatureDrift], cfg: Config) -> list[Reason]:
    bad = [d for d in drift if d.breach]
    if not bad:
        return []
    items = ", ".join(f"{d.feature}@{d.variant} vs {d.against} (PSI {d.psi:.3f}, effect "
                      f"{d.effect:.3f}, Holm p={d.p_adjusted:.2g})" for d in bad)
    d = cfg.analysis.drift
    msg = f"drift (PSI >= {d.psi_threshold} and significant after Holm): {items}"
    return [Reason(codes.DRIFT, msg, d.blocks_promotion)]


def pending_reasons(pending: dict[str, int]) -> list[Reason]:
    if not any(pending.values()):
        return []
    items = ", ".join(f"{k}={v}" for k, v in sorted(pending.items()) if v)
    return [Reason(codes.PENDING_FEEDBACK, f"predictions still waiting for their label: {items}",
                   False)]
