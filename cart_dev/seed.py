"""Stored purchases for an ingest hour, written straight to DynamoDB (tests, benchmarks, cart-dev's history).

The API is the way purchases come in; this writes what the worker would have stored, for
volumes (100k an hour) and for hours in the past that the API cannot produce.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from cart_api.models import PURCHASES, Purchase
from cart_api.store import format_timestamp, to_item
from cart_api.traffic import generate_requests
from cart_aws.aws import AwsClients
from cart_aws.ingest_shards import query_hour


def stored_purchases(hour_start: datetime, count: int, seed: int = 0) -> list[dict[str, Any]]:
    """``count`` valid purchases received during the hour starting at ``hour_start`` (UTC)."""
    rng = random.Random(seed)
    start = hour_start.astimezone(UTC)
    planned = generate_requests(seed, count, 0.0, today=start.date())
    out = []
    for request in planned:
        received = start + timedelta(microseconds=rng.randrange(3_600_000_000))
        body = json.loads(request.body)
        body["purchase_date"] = min(body["purchase_date"], received.date().isoformat())
        out.append(
            {
                **body,
                "purchase_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "received_at": format_timestamp(received),
                "ingest_hour": received.strftime("%Y-%m-%dT%H"),
                "schema_version": PURCHASES.version,
            }
        )
    return out


def _stored(values: dict[str, Any]) -> dict[str, Any]:
    return Purchase.model_validate(values).model_dump()


def put_purchases(aws: AwsClients, table: str, purchases: Iterable[dict[str, Any]], threads: int = 8) -> int:
    """BatchWriteItem in chunks of 25 on a few threads, retrying unprocessed items; returns the count.
    Each item is placed in the ingest-hour index with ``aws.settings``' shard count, as the worker does."""
    items = [to_item(_stored(p), aws.settings.ingest_shards) for p in purchases]
    chunks = [items[i : i + 25] for i in range(0, len(items), 25)]

    def write(chunk: Sequence[dict[str, Any]]) -> None:
        requests: list[Any] = [{"PutRequest": {"Item": item}} for item in chunk]
        while requests:
            answer = aws.dynamodb.batch_write_item(RequestItems={table: requests})
            requests = list(answer.get("UnprocessedItems", {}).get(table, []))

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(write, chunks))
    return len(items)


def ingest_hour_key(hour_start: datetime) -> str:
    """The ``ingest_hour`` value of the hour starting at ``hour_start`` (its shards are the GSI's partition keys)."""
    return hour_start.astimezone(UTC).strftime("%Y-%m-%dT%H")


def hour_holds_purchases(aws: AwsClients, table: str, index: str, hour_start: datetime) -> bool:
    """True when the ingest-hour index has at least one purchase for the hour (a Query per shard,
    never a Scan; it stops at the first purchase found)."""
    pages = query_hour(aws, table, index, ingest_hour_key(hour_start), Select="COUNT", Limit=1)
    try:
        return any(int(page.get("Count", 0)) for page in pages)
    finally:
        pages.close()  # stops querying the shards not read yet


def seed_empty_hours(
    aws: AwsClients,
    table: str,
    index: str,
    hours: Iterable[datetime],
    per_hour: int,
    seed_of: Callable[[datetime], int],
) -> tuple[dict[datetime, int], list[datetime]]:
    """Write ``per_hour`` seeded purchases into each of ``hours`` that holds none yet, so seeded
    history never mixes with, or replaces, purchases that came in (or a previous seeding); returns
    (purchases written per hour, hours left as they were)."""
    written: dict[datetime, int] = {}
    kept: list[datetime] = []
    for hour in hours:
        if hour_holds_purchases(aws, table, index, hour):
            kept.append(hour)
        else:
            written[hour] = put_purchases(aws, table, stored_purchases(hour, per_hour, seed_of(hour)))
    return written, kept
