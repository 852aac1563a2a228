"""Sample ratio mismatch: are units split the way the router was told to split them?

A chi-square goodness-of-fit test of the unit counts per variant against the configured weights
(scipy). A mismatch means assignment or logging is broken, so no effect estimate can be trusted:
it is checked first and blocks promotion (p below ``analysis.srm_p_threshold``, 0.001 by default).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from scipy import stats

from pipeline_components.analysis import codes

MIN_EXPECTED = 5.0  # the chi-square approximation needs about 5 expected units per cell


@dataclass(frozen=True)
class SrmResult:
    observed: dict[str, int]
    expected: dict[str, float]
    p_value: float = float("nan")
    statistic: float = float("nan")
    mismatch: bool = False
    reason: str | None = None
    unexpected: list[str] = field(default_factory=list)


def srm_test(
    observed: Mapping[str, int], weights: Mapping[str, float], threshold: float
) -> SrmResult:
    """Chi-square test of observed unit counts against ``weights`` (normalised over their sum).

    Units in a variant that should get no traffic (absent or weight 0) are a mismatch outright.
    """
    obs = {k: int(v) for k, v in observed.items()}
    live = {k: float(w) for k, w in weights.items() if w > 0}
    total = sum(obs.values())
    wsum = sum(live.values())
    expected = {k: total * w / wsum for k, w in live.items()}
    unexpected = sorted(k for k, v in obs.items() if v > 0 and k not in live)
    if unexpected:
        return SrmResult(obs, expected, 0.0, float("inf"), True, None, unexpected)
    if len(live) < 2:
        return SrmResult(obs, expected, 1.0, 0.0, False)
    if total == 0 or min(expected.values()) < MIN_EXPECTED:
        return SrmResult(obs, expected, reason=codes.NOT_ENOUGH_DATA)
    keys = sorted(live)
    stat, p = stats.chisquare([obs.get(k, 0) for k in keys], [expected[k] for k in keys])
    return SrmResult(obs, expected, float(p), float(stat), bool(p < threshold))
