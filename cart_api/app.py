"""The FastAPI app factory (``uvicorn cart_api.app:create_app --factory``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from cart_api import openapi, problems
from cart_api.backend import Backend
from cart_api.deps import Clock, utc_now
from cart_api.middleware import BodyLimitMiddleware
from cart_api.models import PURCHASES
from cart_api.routers import health, purchases
from cart_api.settings import Settings, get_settings


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
    problems.install(app)
    openapi.install(app)
    app.include_router(purchases.router)
    app.include_router(health.router)
    return app
