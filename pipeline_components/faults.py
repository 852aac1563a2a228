"""Fault injection for tests and demos: the one seam through which abx breaks itself on purpose.

Production code never reads a fault knob directly: it asks this module, once, for a hook, and a
hook is ``None`` unless params.yaml's ``faults`` section turns a fault on (the default is all off,
and a request pays nothing for the capability). Two faults exist:

* ``faults.challenger_failure_rate``: the router's model call raises :class:`InjectedFailure` for
  that share of non-champion calls, so the fallback, the error metrics and the guardrail breaker
  can be exercised with a real model; ``faults.challenger_delay_s`` makes those calls sleep first
  (timeouts, variant isolation);
* ``faults.fail_canary``: the canary step raises right after deploy, so the teardown path of every
  driver (Airflow teardown task, ``abx run``'s ``finally``) can be exercised.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from pipeline_components.aliases import CHAMPION
from pipeline_components.config import Config
from pipeline_components.errors import DeploymentError


class InjectedFailure(DeploymentError):
    """Raised on purpose by a fault the ``faults`` config section turned on."""


VariantFault = Callable[[str], None]


def variant_fault(cfg: Config, seed: int | None = None) -> VariantFault | None:
    """A hook the router calls before each model call with the variant's name, or None (off).

    The hook first sleeps ``faults.challenger_delay_s`` on any variant but the champion (a slow
    or, with a long delay, hanging model), then raises :class:`InjectedFailure` for a
    ``faults.challenger_failure_rate`` share of the calls to any variant but the champion, drawn
    from its own seeded generator.
    """
    rate, delay = cfg.faults.challenger_failure_rate, cfg.faults.challenger_delay_s
    if not rate and not delay:
        return None
    rng = random.Random(cfg.experiment.seed if seed is None else seed)

    def hook(variant: str) -> None:
        if variant != CHAMPION and delay:
            time.sleep(delay)  # in the variant's worker thread: a slow or hanging model
        if variant != CHAMPION and rate and rng.random() < rate:
            raise InjectedFailure(f"injected failure of variant {variant!r} "
                                  f"(faults.challenger_failure_rate={rate})")

    return hook


def canary_fault(cfg: Config) -> None:
    """Raise :class:`InjectedFailure` when ``faults.fail_canary`` asks the canary step to fail."""
    if cfg.faults.fail_canary:
        raise InjectedFailure("faults.fail_canary is true: the canary step fails after deploy "
                              "on purpose (the teardown must still stop the router)")
