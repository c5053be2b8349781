"""The API's and the worker's models: purchase models derived from the data contract, plus the
response and problem shapes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from contracts import load_contract
from contracts.models import contract_model

PURCHASES = load_contract("purchases")

if TYPE_CHECKING:  # the real classes are built from the contract below
    PurchaseRequest = BaseModel
    Purchase = BaseModel
else:
    PurchaseRequest = contract_model(
        PURCHASES,
        "PurchaseRequest",
        sources={"client"},
        doc="A purchase as the client sends it (contract purchases, client fields).",
    )
    Purchase = contract_model(
        PURCHASES,
        "Purchase",
        doc="A purchase as published to SNS and stored in DynamoDB (contract purchases, all fields).",
    )


class PurchaseAccepted(BaseModel):
    purchase_id: str = Field(description="Identifier of the accepted purchase.")
    status: str = Field(default="accepted", description="Always 'accepted': the purchase is durably queued.")
    status_url: str = Field(description="Where to see the purchase once the worker has stored it.")
    received_at: str = Field(description="When the API accepted the purchase (UTC).")


class Readiness(BaseModel):
    status: str = Field(description="'ready' when every dependency answers.")
    checks: dict[str, str] = Field(description="Each dependency and 'ok' or why it failed.")


class StoredPurchase(BaseModel):
    status: str = Field(default="stored", description="Always 'stored'.")
    purchase: dict[str, Any] = Field(description="The purchase as stored.")


class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the offending field ('body' for the whole body).")
    reason: str = Field(description="Why the value was refused.")
    type: str = Field(description="Machine-readable error type.")


class Problem(BaseModel):
    """An RFC 9457 problem details object."""

    type: str = Field(default="about:blank")
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = None


class NotReady(Problem):
    """Problem details of a failed readiness check, with each dependency's check."""

    checks: dict[str, str] = Field(description="Each dependency and 'ok' or why it failed.")
