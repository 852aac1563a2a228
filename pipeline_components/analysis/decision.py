"""The decision object: promote, rollback or continue, with every reason and the evidence.

The DAG branches on ``action``; the report and ``abx analyze`` show ``reasons`` and the tables.
Rules, in order: a blocking reason in ``codes.ROLLBACK_CODES`` (SRM, a guardrail breach, a
significantly worse challenger, no effect at the planned horizon) rolls back; a challenger with
a significant improvement and no blocking reason at all is promoted (the best one under A/B/n);
anything else keeps collecting.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pipeline_components.analysis import codes
from pipeline_components.analysis.cuped import CupedResult
from pipeline_components.analysis.drift import FeatureDrift
from pipeline_components.analysis.fixed import EffectResult
from pipeline_components.analysis.guardrails import GuardrailResult
from pipeline_components.analysis.phases import PhaseEffect
from pipeline_components.analysis.quality import QualityResult
from pipeline_components.analysis.serialize import from_plain, to_plain
from pipeline_components.analysis.shadow import ShadowResult
from pipeline_components.analysis.srm import SrmResult

Action = Literal["promote", "rollback", "continue"]


@dataclass(frozen=True)
class Reason:
    """Why the decision is what it is; ``blocking`` reasons forbid promotion."""

    code: str
    message: str
    blocking: bool
    variant: str | None = None


@dataclass(frozen=True)
class VariantMetrics:
    """Per-variant counts and metrics (the primary metric per unit, operations per request)."""

    variant: str
    units: int
    units_with_feedback: int
    requests: int
    pending: int
    primary_mean: float
    error_rate: float
    latency_p50: float
    latency_p95: float
    latency_p99: float
    quality: QualityResult | None = None


@dataclass(frozen=True)
class Comparison:
    """One challenger against the champion: the deciding test and its supporting evidence."""

    variant: str
    effect: EffectResult
    fixed: EffectResult | None = None
    cuped: CupedResult | None = None
    p_adjusted: float = float("nan")
    guardrails: list[GuardrailResult] = field(default_factory=list)
    verdict: Action = "continue"


@dataclass(frozen=True)
class Decision:
    """Everything ``analyze`` concluded at one look. Serialisable with to_dict/to_json."""

    experiment_id: str
    action: Action
    reasons: list[Reason]
    metrics: dict[str, VariantMetrics]
    comparisons: list[Comparison]
    winner: str | None = None
    method: str = "msprt"
    primary_metric: str = "reward"
    look: int = 1
    srm: SrmResult | None = None
    drift: list[FeatureDrift] = field(default_factory=list)
    shadow: dict[str, ShadowResult] = field(default_factory=dict)
    switched_units: int = 0
    phases: list[PhaseEffect] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Decision:
        return from_plain(cls, data)

    @classmethod
    def from_json(cls, text: str) -> Decision:
        return cls.from_dict(json.loads(text))

    def codes(self) -> list[str]:
        return [r.code for r in self.reasons]


def reason_dicts(reasons: Iterable[Any] | None) -> list[dict[str, Any]]:
    """Reasons in any stored form as ``{"code", "message", "blocking"[, "variant"]}`` dicts.

    A decision's reasons reach the canary, the registry tags and the report as ``Reason``
    objects, JSON dicts (state files, XCom) or ``[code, message, blocking]`` lists (older state
    files); bare text becomes a non-blocking ``NOTE``. One reading for every consumer.
    """
    out: list[dict[str, Any]] = []
    for r in reasons or []:
        if isinstance(r, Reason):
            r = to_plain(r)
        if isinstance(r, Mapping):
            d = {"code": str(r.get("code")), "message": str(r.get("message")),
                 "blocking": bool(r.get("blocking"))}
            if r.get("variant") is not None:
                d["variant"] = str(r["variant"])
        elif isinstance(r, list | tuple) and len(r) >= 2:
            d = {"code": str(r[0]), "message": str(r[1]), "blocking": bool(r[2:3] and r[2])}
        else:
            d = {"code": "NOTE", "message": str(r), "blocking": False}
        out.append(d)
    return out


def variant_verdict(reasons: list[Reason], variant: str) -> Action:
    """Verdict for one challenger from the reasons that name it (or name no variant)."""
    mine = [r for r in reasons if r.variant in (variant, None)]
    if any(r.blocking and r.code in codes.ROLLBACK_CODES for r in mine):
        return "rollback"
    if any(r.code in codes.PROMOTE_CODES for r in mine) and not any(r.blocking for r in mine):
        return "promote"
    return "continue"


def overall_action(
    reasons: list[Reason], comparisons: list[Comparison]
) -> tuple[Action, str | None]:
    """(action, winner): rollback on experiment-wide blockers, else the best verdict."""
    if any(r.blocking and r.code in codes.ROLLBACK_CODES and r.variant is None for r in reasons):
        return "rollback", None
    eligible = [c for c in comparisons if c.verdict == "promote"]
    if eligible:
        best = max(eligible, key=lambda c: c.effect.lift)
        return "promote", best.variant
    if comparisons and all(c.verdict == "rollback" for c in comparisons):
        return "rollback", None
    return "continue", None
