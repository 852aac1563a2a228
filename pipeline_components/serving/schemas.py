"""Request and response models of the router's HTTP contract, and the feature-row checks.

The envelope is parsed by pydantic straight from the JSON bytes (~5 µs). Feature values are
checked against the loaded models' feature spec by a tiny hand-written loop, so every message
names the exact field (``instances.3.features.x2: expected a finite number, got 'abc'``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

ID = Field(min_length=1, max_length=128)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Instance(_Strict):
    unit_id: str = ID
    features: dict[str, Any]


class PredictRequest(_Strict):
    """Either one instance (``unit_id`` + ``features``) or ``instances``: a batch."""

    unit_id: str | None = Field(None, min_length=1, max_length=128)
    features: dict[str, Any] | None = None
    instances: list[Instance] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> PredictRequest:
        single = self.unit_id is not None or self.features is not None
        if single and self.instances is not None:
            raise ValueError("send either unit_id+features or instances, not both")
        if self.instances is None and (self.unit_id is None or self.features is None):
            missing = "unit_id" if self.unit_id is None else "features"
            raise ValueError(f"{missing}: field required (or send instances: [...])")
        if self.instances is not None and not self.instances:
            raise ValueError("instances: must not be empty")
        return self

    def rows(self) -> list[Instance]:
        if self.instances is not None:
            return self.instances
        assert self.unit_id is not None and self.features is not None  # by _one_form
        return [Instance.model_construct(unit_id=self.unit_id, features=self.features)]


class Prediction(BaseModel):
    prediction: float | None
    variant: str
    model_version: str
    request_id: str
    status: str = "ok"


class FeedbackRequest(_Strict):
    request_id: str | None = Field(None, min_length=1, max_length=64)
    unit_id: str | None = Field(None, min_length=1, max_length=128)
    outcome: float
    reward: float | None = None
    feedback_id: str | None = Field(None, min_length=1, max_length=128)  # idempotency key

    @model_validator(mode="after")
    def _has_key(self) -> FeedbackRequest:
        if self.request_id is None and self.unit_id is None:
            raise ValueError("request_id or unit_id: one of them is required")
        return self


class WeightsRequest(_Strict):
    weights: dict[str, float]
    reset_breaker: bool = False


class RollbackRequest(_Strict):
    reason: str = Field(min_length=1, max_length=1000)


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """An OpenAPI ``requestBody`` for ``model``: its JSON schema with ``$defs`` inlined.

    The handlers read raw bytes (no FastAPI body parameter), so the bodies are declared here for
    /openapi.json, where clients and fuzzers (benchmarks/reliability.py) find them.
    """
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return inline(defs[ref.rsplit("/", 1)[1]])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return {"requestBody": {"required": True,
                            "content": {"application/json": {"schema": inline(schema)}}}}


def describe(exc: ValidationError, prefix: str = "") -> str:
    """One line per error, each naming the field path (``instances.0.unit_id: ...``)."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if p not in ("function-after",)) or "body"
        if err["type"] == "json_invalid":
            loc = "body"
            msg = f"malformed JSON: {err.get('ctx', {}).get('error', err['msg'])}"
        elif err["type"] == "extra_forbidden":
            msg = "unknown field"
        else:
            msg = err["msg"]
        parts.append(f"{prefix}{loc}: {msg}")
    return "; ".join(parts)


def _finite(v: float) -> bool:
    try:
        return math.isfinite(v)
    except OverflowError:  # an int beyond float range (JSON allows any digits)
        return False


def check_features(
    features: Mapping[str, Any], names: frozenset[str], categorical: frozenset[str], where: str,
    nullable: frozenset[str] = frozenset(),
) -> str | None:
    """None when ``features`` has exactly ``names`` with the right types, else the first problem.

    ``null`` is accepted for the ``nullable`` columns (the models impute them, as in training).
    """
    if features.keys() != names:
        missing = sorted(names - features.keys())
        if missing:
            return f"{where}.{missing[0]}: missing feature (expected {sorted(names)})"
        extra = sorted(features.keys() - names)
        return f"{where}.{extra[0]}: unknown feature (expected {sorted(names)})"
    for name, v in features.items():
        if v is None:
            if name not in nullable:
                return (f"{where}.{name}: null not allowed (the training data had no missing "
                        f"values here; validation.columns.{name}.max_null_fraction is 0)")
        elif name in categorical:
            if not isinstance(v, str):
                return f"{where}.{name}: expected a string category, got {v!r}"
        elif isinstance(v, bool) or not isinstance(v, (int, float)):
            return f"{where}.{name}: expected a number, got {v!r}"
        elif not _finite(v):
            return f"{where}.{name}: expected a finite number, got {str(v)[:40]}"
    return None
