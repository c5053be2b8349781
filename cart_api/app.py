"""The FastAPI app factory (``uvicorn cart_api.app:create_app --factory``)."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from cart_api import openapi, problems
from cart_api.backend import Backend
from cart_api.deps import Clock, utc_now
from cart_api.middleware import BodyLimitMiddleware
from cart_api.models import PURCHASES
from cart_api.routers import health, purchases
from cart_api.settings import Settings, get_settings
from cart_aws.limits import CORS_ALLOW_HEADERS, CORS_ALLOW_METHODS, CORS_EXPOSE_HEADERS, CORS_MAX_AGE_SECONDS


def settle(backend: Backend) -> None:
    """Build what the first purchase would, then take every object alive now out of the cyclic
    collector's scans (``gc.freeze``) for the life of the process or app.

    A server's heap is mostly what startup built: modules, FastAPI's routes, pydantic's
    validators and botocore's service models (the SNS client alone is ~27,000 objects). Python's
    full collection walks all of it, about every three seconds under load, and each walk stopped
    every request for 35-75 ms: most of the API's p99 (docs/benchmarks.md). Frozen, they are never
    scanned, so a full collection walks only what requests made since. ``gc.freeze`` moves lists
    and costs nothing; the startup garbage it keeps (a few objects) stays until ``gc.unfreeze``.
    """
    backend.prepare()
    gc.freeze()


def create_app(settings: Settings | None = None, *, clock: Clock = utc_now) -> FastAPI:
    """The API; ``clock`` stamps each purchase's ``received_at`` (the demo and tests replay an hour)."""
    settings = settings or get_settings()
    backend = Backend(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settle(backend)
        try:
            yield
        finally:
            gc.unfreeze()  # the objects go back to the collector (an app started in a test ends)
            backend.close()

    app = FastAPI(
        title="Cart purchases API",
        version=PURCHASES.version,
        summary="Accepts shopping-cart purchases into the cart lakehouse.",
        description=(
            "Purchases are validated against the `purchases` data contract "
            f"(version {PURCHASES.version}), published to SNS, queued in SQS and stored in "
            "DynamoDB by the worker. Errors are RFC 9457 problem details naming each field "
            "and the reason. Authenticate with the `X-API-Key` header."
        ),
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.backend = backend
    app.state.clock = clock
    app.state.status_urls = purchases.StatusUrls()
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.cors_allow_origins:
        # added last, so outermost: a preflight is answered before the body limit and before any
        # route's authentication (a browser sends no key with it), and a 413 carries the headers too
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_allow_origins,
            allow_methods=CORS_ALLOW_METHODS,
            allow_headers=CORS_ALLOW_HEADERS,
            expose_headers=CORS_EXPOSE_HEADERS,
            max_age=CORS_MAX_AGE_SECONDS,
        )
    problems.install(app)
    openapi.install(app)
    app.include_router(purchases.router)
    app.include_router(health.router)
    return app
