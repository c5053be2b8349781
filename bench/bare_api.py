"""The ceilings of the ingest API's stack: bare FastAPI endpoints with the API's request model.

``create_app``: ``POST /purchases`` validates the body against the same ``PurchaseRequest``
(built from the purchases contract) and answers 202, nothing else: no authentication, no
publishing, no middleware. ``create_publishing_app``: the same endpoint that also publishes the
purchase as the API does (``build_message`` and the API's batching ``SnsPublisher`` with its boto3
client, settings from ``CART_*`` as the API reads them) before answering: the ceiling of any API
that publishes through boto3, since boto3's CPU per PublishBatch is paid whatever else the API
does. The ingest benchmark's phase (d) runs them under uvicorn in their own processes, as the API
runs, so the API's accepted purchases/s can be read as a share of what FastAPI, pydantic and
uvicorn alone reach on this machine, and of what they reach with boto3's publishing added
(``uvicorn bench.bare_api:create_app --factory``).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fastapi import FastAPI

from cart_api.app import settle
from cart_api.backend import Backend
from cart_api.models import PurchaseRequest
from cart_api.routers.purchases import build_message
from cart_api.settings import get_settings
from cart_api.store import format_timestamp


def create_app() -> FastAPI:
    app = FastAPI(title="Bare purchases endpoint (benchmark ceiling)")

    @app.post("/purchases", status_code=202)
    async def accept(purchase: PurchaseRequest) -> dict[str, str]:
        return {"status": "accepted"}

    return app


def create_publishing_app() -> FastAPI:
    backend = Backend(get_settings())
    settle(backend)  # as the API's startup does: the comparison is of per-request work only
    app = FastAPI(title="Bare purchases endpoint that publishes (benchmark ceiling with boto3)")

    @app.post("/purchases", status_code=202)
    async def accept(purchase: PurchaseRequest) -> dict[str, str]:
        received_at = format_timestamp(datetime.now(UTC))
        await backend.publisher.publish(build_message(purchase, str(uuid.uuid4()), received_at))
        return {"status": "accepted"}

    return app
