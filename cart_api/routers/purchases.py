"""``/purchases``: accept a purchase (202 once SNS has it) and look one up once stored."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Annotated

from botocore.exceptions import BotoCoreError, ClientError
from fastapi import APIRouter, Depends, Header, HTTPException, Path, Request, Response
from fastapi.concurrency import run_in_threadpool

from cart_api.deps import Client, ClockDep, IdempotencyDep, LimitedClient, LookupDep, PublisherDep, require_json
from cart_api.idempotency import IdempotencyUnavailable, fingerprint
from cart_api.models import PURCHASES, Purchase, PurchaseAccepted, PurchaseRequest, StoredPurchase
from cart_api.openapi import RETRY_AFTER, problem
from cart_api.publisher import OutgoingMessage, PublishError
from cart_api.store import format_timestamp, ingest_hour, plain, to_json

log = logging.getLogger(__name__)
router = APIRouter(prefix="/purchases", tags=["purchases"])

UUID_PATTERN = PURCHASES.column("purchase_id").options["pattern"]


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
    """The purchase with the fields the system adds, validated against the whole contract."""
    stamped = datetime.fromisoformat(received_at)
    full = Purchase.model_validate(
        {
            **purchase.model_dump(),
            "purchase_id": purchase_id,
            "received_at": stamped,
            "ingest_hour": ingest_hour(stamped),
            "schema_version": PURCHASES.version,
        }
    )
    return OutgoingMessage(
        body=to_json(full.model_dump()),
        attributes={"purchase_id": purchase_id, "schema_version": PURCHASES.version},
    )


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
    dependencies=[Depends(require_json)],
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
    response: Response,
    client: LimitedClient,
    publisher: PublisherDep,
    idempotency: IdempotencyDep,
    clock: ClockDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=255,
            description="Any unique string per purchase (a UUID); a retry with it returns the first answer.",
        ),
    ] = None,
) -> PurchaseAccepted:
    purchase_id = str(uuid.uuid4())
    received_at = format_timestamp(clock())
    scoped_key = f"{client}:{idempotency_key}" if idempotency_key else None
    if scoped_key:
        try:
            claim = await run_in_threadpool(
                idempotency.claim, scoped_key, fingerprint(plain(purchase.model_dump())), purchase_id, received_at
            )
        except (BotoCoreError, ClientError) as exc:
            raise IdempotencyUnavailable(str(exc)) from exc
        purchase_id, received_at = claim.purchase_id, claim.received_at
        if claim.replay:
            response.headers["Idempotent-Replayed"] = "true"
            return _accepted(request, response, purchase_id, received_at)
    try:
        await publisher.publish(build_message(purchase, purchase_id, received_at))
    except PublishError:
        if scoped_key:
            try:
                await run_in_threadpool(idempotency.release, scoped_key, purchase_id)
            except (BotoCoreError, ClientError):  # the claim expires; a retry then takes it over
                log.exception("could not release Idempotency-Key of purchase %s", purchase_id)
        raise
    if scoped_key:
        try:
            await run_in_threadpool(idempotency.complete, scoped_key)
        except Exception:  # the purchase is queued: a retry takes the claim over once it expires
            log.exception("could not mark Idempotency-Key of purchase %s completed", purchase_id)
    return _accepted(request, response, purchase_id, received_at)


def _accepted(request: Request, response: Response, purchase_id: str, received_at: str) -> PurchaseAccepted:
    status_url = str(request.url_for("get_purchase", purchase_id=purchase_id))
    response.headers["Location"] = status_url
    return PurchaseAccepted(purchase_id=purchase_id, status_url=status_url, received_at=received_at)


@router.get(
    "/{purchase_id}",
    name="get_purchase",
    summary="Look up a stored purchase",
    responses={
        401: UNAUTHORIZED,
        404: problem("Not stored (yet)"),
        422: problem("The purchase id is not a UUID as POST /purchases returns them"),
    },
)
async def read_purchase(
    purchase_id: Annotated[str, Path(pattern=UUID_PATTERN, description="The id returned by POST /purchases.")],
    client: Client,
    lookup: LookupDep,
) -> StoredPurchase:
    found = await run_in_threadpool(lookup, purchase_id)
    if found is None:
        raise HTTPException(
            status_code=404,
            detail=(
                f"Purchase {purchase_id} is not stored (yet): accepted purchases appear once "
                "the worker has stored them."
            ),
        )
    return StoredPurchase(purchase=Purchase.model_validate(found).model_dump(mode="json"))
