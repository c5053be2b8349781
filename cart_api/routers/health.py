"""Liveness and readiness: ``/health`` answers while the process runs, ``/ready`` only when the
services a purchase needs (SNS, DynamoDB) answer."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from cart_api.deps import backend
from cart_api.models import NotReady, Readiness
from cart_api.openapi import problem
from cart_api.problems import PROBLEM_JSON

router = APIRouter(tags=["operations"])


@router.get("/health", summary="Liveness")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/ready",
    summary="Readiness: SNS and DynamoDB answer",
    response_model=Readiness,
    responses={503: problem("A dependency does not answer; its check says why.", model=NotReady)},
)
async def ready(request: Request) -> Readiness | JSONResponse:
    checks = await run_in_threadpool(backend(request).readiness)
    failing = {name: reason for name, reason in checks.items() if reason != "ok"}
    if not failing:
        return Readiness(status="ready", checks=checks)
    body = NotReady(
        type="/problems/not-ready",
        title="Not ready",
        status=503,
        detail="; ".join(f"{name}: {reason}" for name, reason in failing.items()),
        instance=request.url.path,
        checks=checks,
    )
    return JSONResponse(body.model_dump(exclude_none=True), status_code=503, media_type=PROBLEM_JSON)
