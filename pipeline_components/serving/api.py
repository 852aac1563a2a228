"""Public routes: /predict, /feedback, /healthz, /readyz, /metrics, /info.

Handlers read the raw body once (size-checked), parse it with pydantic from bytes, check the
features against the loaded spec, and await the ``Router``, which scores every variant in its own
worker thread (serving/workers.py), never on the event loop. Every rejection is a 4xx naming the
field.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, TypeVar

import orjson
from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, ValidationError

from pipeline_components.serving.router import Router
from pipeline_components.serving.routing import CHAMPION
from pipeline_components.serving.schemas import (
    FeedbackRequest,
    PredictRequest,
    body_schema,
    check_features,
    describe,
)

router = APIRouter()
M = TypeVar("M", bound=BaseModel)
VARIANT_HEADER = "x-abx-variant"


def json_response(payload: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status_code,
                    media_type="application/json")


def get_router(request: Request) -> Router:
    return request.app.state.router


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, or 413 before reading more than ``max_bytes``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise HTTPException(
            413, f"body: {declared} bytes exceeds serving.max_body_bytes={max_bytes}"
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise HTTPException(413, f"body: exceeds serving.max_body_bytes={max_bytes}")
        chunks.append(chunk)
    return b"".join(chunks)


def parse(model: type[M], body: bytes, rt: Router, endpoint: str) -> M:
    """Validate ``body`` into ``model``; 400 for malformed JSON, 422 naming the field otherwise."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        rt.metrics.bad_requests.labels(endpoint).inc()
        bad_json = any(e["type"] == "json_invalid" for e in exc.errors())
        raise HTTPException(400 if bad_json else 422, describe(exc)) from None


def admit(rt: Router, rows: int) -> None:
    """503 + Retry-After when the log writer's queue is full: refuse before answering, never
    answer and then drop the row (back-pressure; docs/serving.md)."""
    if not rt.writer.has_room(rows):
        rt.metrics.bad_requests.labels("backpressure").inc()
        raise HTTPException(503, f"prediction log backlog full ({rt.writer.pending()} rows "
                                 f"waiting, serving.writer_max_pending="
                                 f"{rt.writer.max_pending}); retry later",
                            headers={"Retry-After": "1"})


REFUSAL_REASONS = ("missing feature", "unknown feature", "null not allowed",
                   "expected a string category", "expected a finite number", "expected a number",
                   "exceeds serving.max_batch", "unknown variant", "out of service")


def refusal_reason(detail: str) -> str:
    """The reason label of a refusal (a closed set: metric labels must not grow per request)."""
    return next((r for r in REFUSAL_REASONS if r in detail), "other")


def _check_forced(request: Request, rt: Router, forced: str) -> None:
    """QA overrides need a credential and never reach a challenger the breaker took out."""
    from pipeline_components.serving.admin import require_qa

    try:
        require_qa(request)
    except HTTPException:
        rt.metrics.bad_requests.labels("predict").inc()
        raise
    if forced not in rt.variants:
        raise _reject(rt, 400, f"X-ABX-Variant: unknown variant {forced!r} "
                               f"(have {sorted(rt.variants)})")
    trip = rt.breaker.trip
    if forced != CHAMPION and trip is not None:
        raise _reject(rt, 409, f"X-ABX-Variant: {forced!r} is out of service: the guardrail "
                               f"breaker tripped ({trip.reason}); reset it with "
                               "POST /admin/weights reset_breaker=true")


def _reject(rt: Router, status: int, detail: str) -> HTTPException:
    rt.metrics.bad_requests.labels("predict").inc()
    rt.metrics.refused.labels(refusal_reason(detail)).inc()
    return HTTPException(status, detail)


def count_unseen(rt: Router, features: Mapping[str, Any]) -> None:
    """Count categorical values the models never saw (they answer them as "other")."""
    for name, allowed in rt.allowed_categories.items():
        v = features.get(name)
        if v is not None and v not in allowed:
            rt.metrics.unseen.labels(name).inc()


@router.post("/predict", openapi_extra=body_schema(PredictRequest))
async def predict(request: Request) -> Response:
    """Score one instance or a batch; sticky weighted assignment unless X-ABX-Variant forces one."""
    rt = get_router(request)
    body = await read_body(request, rt.cfg.serving.max_body_bytes)
    if not rt.ready:
        raise HTTPException(503, f"not ready: {rt.load_error or 'models are loading'}")
    req = parse(PredictRequest, body, rt, "predict")
    instances = req.rows()
    if len(instances) > rt.cfg.serving.max_batch:
        raise _reject(rt, 413, f"instances: {len(instances)} rows exceeds "
                               f"serving.max_batch={rt.cfg.serving.max_batch}")
    batch = req.instances is not None
    for i, inst in enumerate(instances):
        where = f"instances.{i}.features" if batch else "features"
        problem = check_features(inst.features, rt.names, rt.categorical, where, rt.nullable)
        if problem:
            raise _reject(rt, 422, problem)
        count_unseen(rt, inst.features)
    forced = request.headers.get(VARIANT_HEADER)
    if forced is not None:
        _check_forced(request, rt, forced)
    admit(rt, len(instances) * (len(rt.variants) if rt.shadow else 1))
    rows: list[tuple[str, Mapping[str, Any]]] = [(i.unit_id, i.features) for i in instances]
    answers = await rt.predict(rows, forced)
    for a in answers:
        del a["latency_ms"]
    if batch:
        return json_response({"predictions": answers})
    return json_response(answers[0], 503 if answers[0]["status"] == "error" else 200)


@router.post("/feedback", openapi_extra=body_schema(FeedbackRequest))
async def feedback(request: Request) -> Response:
    """Record a delayed outcome for a request id or a unit id (client key; idempotent per id)."""
    from pipeline_components.serving.feedback import (
        check_outcome,
        feedback_row,
        require_client_key,
    )

    rt = get_router(request)
    require_client_key(request)
    fb = parse(FeedbackRequest, await read_body(request, rt.cfg.serving.max_body_bytes),
               rt, "feedback")
    problem = check_outcome(rt.cfg, fb.outcome, fb.reward)
    if problem:
        rt.metrics.bad_requests.labels("feedback").inc()
        raise HTTPException(422, problem)
    admit(rt, 1)
    rt.writer.put("feedback", feedback_row(rt.exp_id, time.time(), fb.model_dump()))
    return json_response({"status": "ok"})


@router.get("/healthz")
async def healthz() -> Response:
    return json_response({"status": "ok"})


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    rt = get_router(request)
    if rt.ready:
        return json_response({"status": "ready"})
    return json_response({"status": "not ready", "error": rt.load_error}, 503)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    rt = get_router(request)
    return Response(rt.metrics.render(), media_type=rt.metrics.content_type)


@router.get("/info")
async def info(request: Request) -> Response:
    """Feature contract and versions; lets another router use this one as a remote variant."""
    rt = get_router(request)
    if not rt.ready:
        raise HTTPException(503, "not ready")
    champ = rt.variants["champion"]
    return json_response({"experiment_id": rt.exp_id, "features": list(champ.spec.names),
                          "categorical": sorted(rt.categorical),
                          "model_version": champ.model_version,
                          "variants": {n: v.model_version for n, v in rt.variants.items()}})
