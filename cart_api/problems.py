"""Errors as RFC 9457 problem details: every refusal names the field and the reason."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cart_api.idempotency import IdempotencyConflict, IdempotencyInProgress, IdempotencyUnavailable
from cart_api.models import FieldError, Problem
from cart_api.publisher import PublishError

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"


def problem_response(
    status: int,
    detail: str | None = None,
    *,
    title: str | None = None,
    problem_type: str = "about:blank",
    errors: list[FieldError] | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = Problem(
        type=problem_type,
        title=title or HTTPStatus(status).phrase,
        status=status,
        detail=detail,
        instance=instance,
        errors=errors,
    )
    return JSONResponse(
        body.model_dump(exclude_none=True), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


def field_errors(errors: list[Any]) -> list[FieldError]:
    out = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ())]
        if loc and loc[0] == "body":
            loc = loc[1:]
        if err.get("type") == "json_invalid":
            loc = []  # the position inside the body is in the reason
        reason = str(err.get("msg", "invalid"))
        ctx_error = (err.get("ctx") or {}).get("error")
        if err.get("type") == "json_invalid" and ctx_error:
            reason = f"{reason}: {ctx_error}"
        out.append(FieldError(field=".".join(loc) or "body", reason=reason, type=str(err.get("type"))))
    return out


def _summary(errors: list[FieldError]) -> str:
    return "; ".join(f"{e.field}: {e.reason}" for e in errors)


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = field_errors(list(exc.errors()))
    if any(e.type == "json_invalid" for e in errors):
        return problem_response(
            400,
            _summary(errors),
            title="Malformed JSON",
            problem_type="/problems/malformed-json",
            errors=errors,
            instance=request.url.path,
        )
    return problem_response(
        422,
        _summary(errors),
        title="Invalid request",
        problem_type="/problems/invalid-request",
        errors=errors,
        instance=request.url.path,
    )


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return problem_response(
        exc.status_code, str(exc.detail), instance=request.url.path, headers=dict(exc.headers or {})
    )


async def _publish_failed(request: Request, exc: Exception) -> JSONResponse:
    log.error("SNS did not confirm a purchase: %s", exc)
    return problem_response(
        503,
        "The purchase could not be queued and was not accepted; retry later.",
        title="Purchases temporarily unavailable",
        problem_type="/problems/publish-failed",
        instance=request.url.path,
        headers={"Retry-After": "1"},
    )


async def _idempotency_conflict(request: Request, exc: Exception) -> JSONResponse:
    return problem_response(
        422,
        "This Idempotency-Key was used with a different request body; use a new key for a new purchase.",
        title="Idempotency-Key reused",
        problem_type="/problems/idempotency-key-reused",
        errors=[
            FieldError(
                field="header.Idempotency-Key", reason="reused with a different body", type="idempotency_key_reused"
            )
        ],
        instance=request.url.path,
    )


async def _idempotency_busy(request: Request, exc: Exception) -> JSONResponse:
    return problem_response(
        409,
        "A request with this Idempotency-Key is still being processed; retry shortly.",
        title="Request in progress",
        problem_type="/problems/idempotency-in-progress",
        instance=request.url.path,
        headers={"Retry-After": "1"},
    )


async def _idempotency_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.error("the idempotency table did not answer: %s", exc)
    return problem_response(
        503,
        "The Idempotency-Key could not be recorded, so the purchase was not accepted; retry later with the same key.",
        title="Purchases temporarily unavailable",
        problem_type="/problems/idempotency-unavailable",
        instance=request.url.path,
        headers={"Retry-After": "1"},
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(500, "An unexpected error occurred; it has been logged.", instance=request.url.path)


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(PublishError, _publish_failed)
    app.add_exception_handler(IdempotencyConflict, _idempotency_conflict)
    app.add_exception_handler(IdempotencyInProgress, _idempotency_busy)
    app.add_exception_handler(IdempotencyUnavailable, _idempotency_unavailable)
    app.add_exception_handler(Exception, _unexpected)
