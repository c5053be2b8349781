"""Liveness and readiness: ``/health`` answers while the process runs, ``/ready`` only when the
services a purchase needs (SNS, DynamoDB) answer."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from cart_api.deps import ReadinessDep

router = APIRouter(tags=["operations"])


@router.get("/health", summary="Liveness")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/ready",
    summary="Readiness: SNS and DynamoDB answer",
    responses={503: {"description": "A dependency does not answer; the failing check says why."}},
)
async def ready(probe: ReadinessDep) -> JSONResponse:
    checks = await run_in_threadpool(probe)
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ok else "not ready", "checks": checks}, status_code=200 if ok else 503)
