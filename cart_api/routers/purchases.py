"""``/purchases``: accept a purchase (202 once SNS has it) and look one up once stored."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime
from typing import Annotated

from botocore.exceptions import BotoCoreError, ClientError
from fastapi import APIRouter, Header, HTTPException, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from cart_api.deps import Client, Sender, backend, clock
from cart_api.idempotency import IdempotencyUnavailable, fingerprint
from cart_api.models import PURCHASES, Purchase, PurchaseAccepted, PurchaseRequest, StoredPurchase
from cart_api.openapi import RETRY_AFTER, problem
from cart_api.publisher import OutgoingMessage, PublishError
from cart_api.store import format_timestamp, ingest_hour, plain

log = logging.getLogger(__name__)
router = APIRouter(prefix="/purchases", tags=["purchases"])

UUID_PATTERN = PURCHASES.column("purchase_id").options["pattern"]
STATUS_ROUTE = "get_purchase"
# the published message's fields in the contract's order (system fields first), as Purchase has them
MESSAGE_FIELDS = tuple(Purchase.model_fields)
# built once: json.dumps builds an encoder per call when given any option
_MESSAGE_JSON = json.JSONEncoder(separators=(",", ":"))
_RESPONSE_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))  # as JSONResponse


class AcceptedResponse(JSONResponse):
    """The 202 body, rendered with the encoder built once (JSONResponse's own renders alike)."""

    def render(self, content: object) -> bytes:
        return _RESPONSE_JSON.encode(content).encode()


UNAUTHORIZED = problem(
    "Missing or invalid API key",
    headers={
        "WWW-Authenticate": {
            "description": "The scheme to use: ApiKey.",
            "required": True,
            "schema": {"type": "string"},
        }
    },
)


def build_message(purchase: PurchaseRequest, purchase_id: str, received_at: str) -> OutgoingMessage:
    """The purchase with the fields the system adds, as the whole contract (``Purchase``) has it.

    The client's fields were validated by ``PurchaseRequest``, and the system's are made here in
    their contract format (a UUID 4, ``format_timestamp``, its hour, the contract version), so the
    message is not validated a second time as a ``Purchase``: that cost a fifth of the API's CPU
    per purchase. The body is the same, byte for byte (tests/cart_api/test_app.py).
    """
    values = {
        "purchase_id": purchase_id,
        "received_at": received_at,
        "ingest_hour": ingest_hour(datetime.fromisoformat(received_at)),
        "schema_version": PURCHASES.version,
        **purchase.model_dump(mode="json"),  # amounts as JSON numbers, dates as yyyy-MM-dd
    }
    return OutgoingMessage(
        body=_MESSAGE_JSON.encode({name: values.get(name) for name in MESSAGE_FIELDS}),
        attributes={"purchase_id": purchase_id, "schema_version": PURCHASES.version},
    )


class StatusUrls:
    """The status URL of a purchase in one app: the URL of ``GET /purchases/{purchase_id}`` as
    ``url_for`` builds it, from a prefix kept per base URL (scheme, Host, server, root path), so
    ``url_for`` (a tenth of the API's CPU per purchase) runs once per base URL, not per request."""

    MAX_PREFIXES = 64  # the Host header is the client's: never an unbounded cache

    def __init__(self) -> None:
        self._prefixes: dict[tuple[object, ...], str] = {}

    def __call__(self, request: Request, purchase_id: str) -> str:
        scope = request.scope
        server = scope.get("server")
        # what Request.base_url is made of (the app's route to the status endpoint is fixed)
        base = (
            scope.get("scheme"),
            request.headers.get("host"),
            tuple(server) if server else None,
            scope.get("app_root_path", scope.get("root_path")),
        )
        prefix = self._prefixes.get(base)
        if prefix is not None:
            return prefix + purchase_id
        url = str(request.url_for(STATUS_ROUTE, purchase_id=purchase_id))
        if url.endswith(purchase_id) and len(self._prefixes) < self.MAX_PREFIXES:
            self._prefixes[base] = url[: -len(purchase_id)]
        return url


@router.post(
    "",
    status_code=202,
    summary="Accept a purchase",
    description=(
        "Validates the purchase against the purchases data contract and queues it. The answer "
        "(202) comes only after SNS has confirmed the message, so an accepted purchase is never "
        "lost; the worker then stores it, after which the status URL answers 200. Send an "
        "`Idempotency-Key` to retry safely: the same key and body return the same purchase."
    ),
    response_model=PurchaseAccepted,
    responses={
        202: {
            "description": "Accepted: SNS has the purchase (or this is a replay of an accepted one)",
            "headers": {
                "Location": {
                    "description": "The status URL of the purchase.",
                    "required": True,
                    "schema": {"type": "string"},
                },
                "Idempotent-Replayed": {
                    "description": "Sent on a replay: the first answer to this Idempotency-Key and body.",
                    "schema": {"type": "string", "enum": ["true"]},
                },
            },
        },
        400: problem("Malformed JSON"),
        401: UNAUTHORIZED,
        409: problem("A request with the same Idempotency-Key is in progress", headers=RETRY_AFTER),
        413: problem("Request body too large"),
        415: problem("Body is not application/json"),
        422: problem(
            "The purchase breaks the contract (each field and reason are listed), or the "
            "Idempotency-Key was used before with another body"
        ),
        429: problem("Too many requests from this API key: retry after Retry-After seconds", headers=RETRY_AFTER),
        503: problem("SNS (or the idempotency table) did not answer: nothing was accepted, retry", headers=RETRY_AFTER),
    },
)
async def create_purchase(
    purchase: PurchaseRequest,
    request: Request,
    client: Sender,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=255,
            description="Any unique string per purchase (a UUID); a retry with it returns the first answer.",
        ),
    ] = None,
) -> AcceptedResponse:
    purchase_id = str(uuid.uuid4())
    received_at = format_timestamp(clock(request)())
    services = backend(request)
    scoped_key = f"{client}:{idempotency_key}" if idempotency_key else None
    if scoped_key:
        idempotency = services.idempotency
        try:
            claim = await run_in_threadpool(
                idempotency.claim, scoped_key, fingerprint(plain(purchase.model_dump())), purchase_id, received_at
            )
        except (BotoCoreError, ClientError) as exc:
            raise IdempotencyUnavailable(str(exc)) from exc
        purchase_id, received_at = claim.purchase_id, claim.received_at
        if claim.replay:
            return _accepted(request, purchase_id, received_at, replayed=True)
    try:
        await services.publisher.publish(build_message(purchase, purchase_id, received_at))
    except PublishError:
        if scoped_key:
            try:
                await run_in_threadpool(services.idempotency.release, scoped_key, purchase_id)
            except (BotoCoreError, ClientError):  # the claim expires; a retry then takes it over
                log.exception("could not release Idempotency-Key of purchase %s", purchase_id)
        raise
    if scoped_key:
        try:
            await run_in_threadpool(services.idempotency.complete, scoped_key)
        except Exception:  # the purchase is queued: a retry takes the claim over once it expires
            log.exception("could not mark Idempotency-Key of purchase %s completed", purchase_id)
    return _accepted(request, purchase_id, received_at)


def _accepted(request: Request, purchase_id: str, received_at: str, *, replayed: bool = False) -> AcceptedResponse:
    """The 202, rendered here: FastAPI would validate a returned PurchaseAccepted against the
    response model once more before serialising it (the model still documents the answer)."""
    status_url: str = request.app.state.status_urls(request, purchase_id)
    headers = {"Location": status_url}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    body = {"purchase_id": purchase_id, "status": "accepted", "status_url": status_url, "received_at": received_at}
    return AcceptedResponse(body, status_code=202, headers=headers)


@router.get(
    "/{purchase_id}",
    name=STATUS_ROUTE,
    summary="Look up a stored purchase",
    responses={
        401: UNAUTHORIZED,
        404: problem("Not stored (yet)"),
        422: problem("The purchase id is not a UUID as POST /purchases returns them"),
    },
)
async def read_purchase(
    purchase_id: Annotated[str, Path(pattern=UUID_PATTERN, description="The id returned by POST /purchases.")],
    request: Request,
    client: Client,
) -> StoredPurchase:
    found = await run_in_threadpool(backend(request).lookup, purchase_id)
    if found is None:
        raise HTTPException(
            status_code=404,
            detail=(
                f"Purchase {purchase_id} is not stored (yet): accepted purchases appear once "
                "the worker has stored them."
            ),
        )
    return StoredPurchase(purchase=Purchase.model_validate(found).model_dump(mode="json"))
