"""The ceiling of the ingest API's stack: a bare FastAPI endpoint with the API's request model.

``POST /purchases`` validates the body against the same ``PurchaseRequest`` (built from the
purchases contract) and answers 202, nothing else: no authentication, no publishing, no
middleware. The ingest benchmark's phase (d) runs it under uvicorn in its own process, as the API
runs, so the API's accepted purchases/s can be read as a share of what FastAPI, pydantic and
uvicorn alone reach on this machine (``uvicorn bench.bare_api:create_app --factory``).
"""

from __future__ import annotations

from fastapi import FastAPI

from cart_api.models import PurchaseRequest


def create_app() -> FastAPI:
    app = FastAPI(title="Bare purchases endpoint (benchmark ceiling)")

    @app.post("/purchases", status_code=202)
    async def accept(purchase: PurchaseRequest) -> dict[str, str]:
        return {"status": "accepted"}

    return app
