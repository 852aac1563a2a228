"""Sticky, weighted, ramp-monotonic variant assignment: a pure function of (unit id, salt, weights).

A unit hashes to a bucket in [0, 1). Weights become cumulative ranges with the challenger side
first and the champion last, so growing the challenger's share only moves champion units into
the challenger: a unit in the challenger at 5% is still there at 25% (a ramp never flips a user
back). The hash depends only on the salt and the unit id, so every router process, and every
restart, assigns the same unit to the same variant.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass

from pipeline_components.aliases import CHAMPION

_SCALE = float(1 << 64)


def bucket(unit_id: str, salt: str) -> float:
    """Map a unit to a uniform point in [0, 1), stable across processes and Python versions."""
    digest = hashlib.blake2b(f"{salt}\x1f{unit_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def variant_order(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Range order: every non-champion variant (sorted by name), then the champion last."""
    others = sorted(n for n in names if n != CHAMPION)
    return tuple(others + [CHAMPION]) if CHAMPION in names else tuple(others)


@dataclass(frozen=True)
class RoutingTable:
    """Precomputed cumulative upper bounds; built once per weight change, read on every request."""

    names: tuple[str, ...]
    bounds: tuple[float, ...]
    weights: tuple[tuple[str, float], ...]

    @classmethod
    def from_weights(cls, weights: Mapping[str, float]) -> RoutingTable:
        """Normalise ``weights`` (>= 0, positive sum) into cumulative ranges.

        Raises:
            ValueError: a weight is negative or not finite, or all weights are zero.
        """
        if not weights:
            raise ValueError("weights: at least one variant is needed")
        for name, w in weights.items():
            if not (w >= 0.0 and w < float("inf")):
                raise ValueError(f"weights.{name}: must be a finite number >= 0, got {w!r}")
        total = float(sum(weights.values()))
        if total <= 0.0:
            raise ValueError("weights: must not all be 0")
        names = [n for n in variant_order(list(weights)) if weights[n] > 0.0]
        bounds, acc = [], 0.0
        for name in names:
            acc += weights[name] / total
            bounds.append(acc)
        bounds[-1] = 1.0  # float rounding must never leave a gap at the top
        norm = tuple((n, weights[n] / total) for n in variant_order(list(weights)))
        return cls(names=tuple(names), bounds=tuple(bounds), weights=norm)

    def pick(self, point: float) -> str:
        """The variant whose cumulative range holds ``point`` (a bucket in [0, 1))."""
        return self.names[min(bisect_right(self.bounds, point), len(self.names) - 1)]

    def as_dict(self) -> dict[str, float]:
        return dict(self.weights)


def assign_variant(unit_id: str, salt: str, weights: Mapping[str, float]) -> str:
    """Assign ``unit_id`` to a variant, sticky for a given salt and monotonic under ramps.

    Args:
        unit_id: the unit of randomisation (a user id).
        salt: the experiment salt (``cfg.salt``); a new salt reshuffles everyone.
        weights: variant name to traffic share; need not sum to 1.

    Returns:
        The variant name.

    Example:
        >>> assign_variant("user-1", "exp-1", {"champion": 1.0, "challenger": 0.0})
        'champion'
    """
    return RoutingTable.from_weights(weights).pick(bucket(unit_id, salt))
