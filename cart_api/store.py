"""DynamoDB items of purchases: one conversion both ways, shared by the worker, the API's status
endpoint and the lakehouse's bronze read."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from cart_api.models import PURCHASES
from cart_aws.ingest_shards import SHARD_ATTRIBUTE, with_shard

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

_SERIALIZER = TypeSerializer()
_DESERIALIZER = TypeDeserializer()
_INTEGER_COLUMNS = frozenset(c.name for c in PURCHASES.columns() if c.logical_type == "integer")


def format_timestamp(value: datetime) -> str:
    """UTC, microseconds, ``Z``: one spelling, so a purchase always serialises identically."""
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def ingest_hour(received_at: datetime) -> str:
    return received_at.astimezone(UTC).strftime("%Y-%m-%dT%H")


def plain(values: dict[str, Any]) -> dict[str, Any]:
    """A validated purchase as plain values: dates and timestamps as ISO strings."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, datetime):
            out[key] = format_timestamp(value)
        elif isinstance(value, date):
            out[key] = value.isoformat()
        else:
            out[key] = value
    return out


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)  # amounts have two decimals: float's shortest repr round-trips
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def to_json(values: dict[str, Any]) -> str:
    """The message body of a purchase: compact JSON, numbers as JSON numbers."""
    return json.dumps(plain(values), default=_json_default, separators=(",", ":"))


def to_item(values: dict[str, Any], shards: int) -> dict[str, Any]:
    """The DynamoDB item of a purchase, with its shard of the ingest-hour index under ``shards``."""
    item = {k: _SERIALIZER.serialize(v) for k, v in plain(values).items() if v is not None}
    return with_shard(item, shards)


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    """The purchase an item holds, without ``ingest_shard`` (where it is indexed, not what it is)."""
    values = {k: _DESERIALIZER.deserialize(v) for k, v in item.items() if k != SHARD_ATTRIBUTE}
    for key in _INTEGER_COLUMNS & values.keys():
        if isinstance(values[key], Decimal):
            values[key] = int(values[key])
    return values


def get_purchase(dynamodb: DynamoDBClient, table: str, purchase_id: str) -> dict[str, Any] | None:
    item = dynamodb.get_item(TableName=table, Key={"purchase_id": {"S": purchase_id}}).get("Item")
    return from_item(item) if item else None
