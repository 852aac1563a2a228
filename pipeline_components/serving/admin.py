"""Admin routes behind a bearer token, compared in constant time.

Status, weights, promote, rollback.
A tripped breaker pins the champion: only a rollback, or a weight change with
``reset_breaker: true``, changes routing afterwards.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Depends, HTTPException, Request, Response

from pipeline_components.serving.api import get_router, json_response, parse, read_body
from pipeline_components.serving.routing import CHAMPION
from pipeline_components.serving.schemas import RollbackRequest, WeightsRequest


def check_bearer(request: Request, tokens: list[str | None], what: str) -> None:
    """401 without a bearer token, 403 when it matches none of ``tokens`` (constant-time
    compares), 503 when none is configured."""
    known = [t for t in tokens if t]
    if not known:
        raise HTTPException(503, f"{what} disabled: set serving.admin_token or ABX_ADMIN_TOKEN")
    auth = request.headers.get("authorization", "")
    scheme, _, given = auth.partition(" ")
    if not auth or scheme.lower() != "bearer" or not given:
        raise HTTPException(401, f"authorization: bearer token required ({what})",
                            headers={"WWW-Authenticate": "Bearer"})
    offered = given.strip().encode()
    if not any([hmac.compare_digest(offered, t.encode()) for t in known]):
        raise HTTPException(403, "authorization: invalid token")


def require_admin(request: Request) -> None:
    """401 without a bearer token, 403 with a wrong one, 503 when no token is configured."""
    check_bearer(request, [request.app.state.admin_token], "admin")


def require_qa(request: Request) -> None:
    """Forcing a variant (X-ABX-Variant) needs the QA token or the admin token."""
    state = request.app.state
    check_bearer(request, [state.admin_token, getattr(state, "qa_token", None)],
                 "X-ABX-Variant")


admin = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])


@admin.get("/status")
async def status(request: Request) -> Response:
    st = get_router(request).status()
    st["gc"] = request.app.state.gc.status() if hasattr(request.app.state, "gc") else None
    return json_response(st)


async def _apply(request: Request, weights: dict[str, float], kind: str, detail: dict,
                 reset: bool = False) -> Response:
    rt = get_router(request)
    try:
        return json_response(rt.set_weights(weights, kind, detail, reset_breaker=reset))
    except PermissionError as exc:
        raise HTTPException(409, str(exc)) from None
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


@admin.post("/weights")
async def set_weights(request: Request) -> Response:
    """Swap the traffic split atomically: {"weights": {...}, "reset_breaker": false}."""
    rt = get_router(request)
    req = parse(WeightsRequest, await read_body(request, 65536), rt, "admin")
    return await _apply(request, req.weights, "weights", {}, req.reset_breaker)


@admin.post("/promote")
async def promote(request: Request) -> Response:
    """Send all traffic to the challenger (the registry alias move is the pipeline's job)."""
    rt = get_router(request)
    target = request.query_params.get("variant", "challenger")
    if target not in rt.uris:
        raise HTTPException(422, f"variant: unknown variant {target!r} (have {sorted(rt.uris)})")
    return await _apply(request, {n: float(n == target) for n in rt.uris}, "promote",
                        {"variant": target})


@admin.post("/rollback")
async def rollback(request: Request) -> Response:
    """All traffic to the champion, with the reason recorded: {"reason": "..."}."""
    rt = get_router(request)
    req = parse(RollbackRequest, await read_body(request, 65536), rt, "admin")
    return await _apply(request, {n: float(n == CHAMPION) for n in rt.uris}, "rollback",
                        {"reason": req.reason})
