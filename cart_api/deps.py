"""FastAPI dependencies of the routes: authentication, rate limit and content type.

The services a request uses (publisher, idempotency store, limiter, lookup, readiness probe) live
for the whole app on ``app.state.backend``, and the clock on ``app.state.clock``; a route reads
them there instead of having FastAPI resolve a dependency per service per request: FastAPI
spends about as much CPU on each dependency node as these checks do, and ``POST /purchases`` had
13 of them (API key, settings, limiter, backend, publisher, idempotency store, clock, JSON check …),
the largest share of the API's CPU per purchase (docs/benchmarks.md). Tests substitute a service
by assigning it (``app.state.backend.publisher = fake``), the clock through ``create_app(clock=...)``.

Every dependency here is ``async def``: FastAPI runs a plain ``def`` dependency in a worker
thread, a thread hop per dependency per request. None of them may block.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated

from fastapi import HTTPException, Security
from fastapi.security import APIKeyHeader
from starlette.requests import HTTPConnection

from cart_api.backend import Backend
from cart_api.settings import Settings

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def backend(request: HTTPConnection) -> Backend:
    """The app's services (``app.state.backend``), built once per app."""
    found: Backend = request.app.state.backend
    return found


def clock(request: HTTPConnection) -> Clock:
    """The clock that stamps ``received_at`` (and so the ingest hour): ``create_app(clock=...)``."""
    found: Clock = request.app.state.clock
    return found


def _client(request: HTTPConnection, api_key: str | None) -> str:
    """The name of the client whose key was sent; 401 without a valid key."""
    settings: Settings = request.app.state.settings
    if settings.auth_mode == "cognito":
        return _cognito_client(request)
    name = backend(request).api_keys.client(api_key) if api_key else None
    if name is not None:
        return name
    raise HTTPException(
        status_code=401,
        detail="A valid API key is required in the X-API-Key header." if not api_key else "The API key is not valid.",
        headers={"WWW-Authenticate": "ApiKey"},
    )


def _cognito_client(request: HTTPConnection) -> str:
    """The app client of the Cognito access token API Gateway's authorizer verified (CART_AUTH_MODE
    cognito): its claims arrive in the Lambda event Mangum passes on. The function can be invoked
    only by that API (its resource policy), so a request without them did not come through it."""
    event = request.scope.get("aws.event") or {}
    claims = (event.get("requestContext") or {}).get("authorizer", {}).get("claims") or {}
    client = claims.get("client_id")
    if client:
        return str(client)
    raise HTTPException(
        status_code=401,
        detail="A Cognito access token is required in the Authorization header (CART_AUTH_MODE is cognito).",
        headers={"WWW-Authenticate": "Bearer"},
    )


def _require_json(request: HTTPConnection) -> None:
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise HTTPException(
            status_code=415,
            detail=f"Send the purchase as application/json (got {content_type or 'no Content-Type'}).",
        )


def _within_rate(request: HTTPConnection, client: str) -> None:
    """429 with Retry-After when the client is over its rate."""
    limiter = backend(request).limiter
    if limiter is not None:
        wait = limiter.acquire(client)
        if wait > 0:
            raise HTTPException(
                status_code=429,
                detail=f"Client {client!r} sent more than {limiter.rate:g} requests per second; retry after the wait.",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )


class ApiKey(APIKeyHeader):
    """The ``X-API-Key`` header: documented as the OpenAPI security scheme ``APIKeyHeader`` and,
    as a dependency, the client it authenticates (401 without a valid key).

    ``sender=True`` (a request that sends a body) checks in this order: a JSON body (415), the
    key (401), the client's rate (429). The checks live in the scheme itself rather than in a
    dependency that takes the header from it: FastAPI resolves every dependency node per request,
    which cost as much CPU as the checks.
    """

    def __init__(self, *, sender: bool) -> None:
        super().__init__(
            name="X-API-Key",
            scheme_name="APIKeyHeader",
            description="API key of the calling client (CART_API_KEYS).",
            auto_error=False,
        )
        self.sender = sender

    async def __call__(self, request: HTTPConnection) -> str:
        if self.sender:
            _require_json(request)
        client = _client(request, request.headers.get("x-api-key"))
        if self.sender:
            _within_rate(request, client)
        return client


require_client = ApiKey(sender=False)
require_sender = ApiKey(sender=True)
Client = Annotated[str, Security(require_client)]
Sender = Annotated[str, Security(require_sender)]
