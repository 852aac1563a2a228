"""The champion/challenger router: sticky weighted split, shadow mode, batched logging, guardrails.

``create_app(cfg, variants)`` builds the FastAPI app; ``abx serve`` runs it; the deploy package
starts it as a managed process. See docs/serving.md.
"""

from __future__ import annotations

from pipeline_components.serving.routing import RoutingTable, assign_variant, bucket

__all__ = ["RoutingTable", "assign_variant", "bucket", "create_app"]


def __getattr__(name: str) -> object:
    # The app pulls in FastAPI, sklearn and SQLAlchemy: import it only when asked for.
    if name == "create_app":
        from pipeline_components.serving.app import create_app

        return create_app
    raise AttributeError(name)
