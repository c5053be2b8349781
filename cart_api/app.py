"""The FastAPI app factory (``uvicorn cart_api.app:create_app --factory``)."""

from __future__ import annotations

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


def create_app(settings: Settings | None = None, *, clock: Clock = utc_now) -> FastAPI:
    """The API; ``clock`` stamps each purchase's ``received_at`` (the demo and tests replay an hour)."""
    settings = settings or get_settings()
    backend = Backend(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
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
