"""The sharded ingest-hour index against the moto server: a purchase always lands on the same
shard, an hour spread over its shards is read whole (paginated; one shard at a time, as against
moto, and in parallel, as on AWS), hours written under another shard count stay readable, and a
failing or abandoned parallel read leaves no thread behind."""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from cart_api.settings import Settings
from cart_aws.aws import AwsClients
from cart_aws.ingest_shards import SHARD_ATTRIBUTE, count_hour, query_hour, shard_key, shard_of
from cart_dev.seed import put_purchases, stored_purchases

HOUR = datetime(2026, 11, 25, 9, tzinfo=UTC)
NEXT = datetime(2026, 11, 25, 10, tzinfo=UTC)


def with_shards(settings: Settings, shards: int, read_shards: int = 0) -> AwsClients:
    """Clients whose settings write (and read) with another shard count, as a changed
    CART_INGEST_SHARDS / CART_INGEST_READ_SHARDS would give them."""
    changed = settings.model_copy(update={"ingest_shards": shards, "ingest_read_shards": read_shards})
    return AwsClients(changed)


def read_ids(aws: AwsClients, settings: Settings, hour: datetime, **query: Any) -> list[str]:
    pages = query_hour(aws, settings.purchases_table, settings.ingest_hour_index, hour.strftime("%Y-%m-%dT%H"), **query)
    return [item["purchase_id"]["S"] for page in pages for item in page.get("Items", [])]


def stored_shards(aws: AwsClients, settings: Settings) -> dict[str, str]:
    """purchase_id -> ingest_shard of every stored item (a Scan: for the test's eyes only)."""
    items = aws.dynamodb.scan(TableName=settings.purchases_table)["Items"]
    return {i["purchase_id"]["S"]: i[SHARD_ATTRIBUTE]["S"] for i in items}


def no_shard_threads() -> bool:
    return not [t for t in threading.enumerate() if t.name.startswith("ingest-shard")]


def test_a_purchase_always_gets_the_same_shard_and_an_hour_spreads_evenly() -> None:
    # a fixed value: a salted hash (Python's hash()) would differ between processes and retries
    assert shard_of("3f1c0c52-0000-4000-8000-000000000001", 16) == 13
    assert shard_key("2026-11-25T09", "3f1c0c52-0000-4000-8000-000000000001", 16) == "2026-11-25T09#13"
    rng = random.Random(1)
    ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(16_000)]
    per_shard = Counter(shard_of(pid, 16) for pid in ids)
    assert sorted(per_shard) == list(range(16))
    assert max(per_shard.values()) <= 1.1 * 1_000  # no hot shard: the write ceiling is 16 partitions' worth


def test_an_hour_spread_over_its_shards_is_read_whole(settings: Settings, aws: AwsClients) -> None:
    assert settings.ingest_shards == 16  # the default
    hour = stored_purchases(HOUR, 200, seed=1)
    put_purchases(aws, settings.purchases_table, hour + stored_purchases(NEXT, 20, seed=2))

    shards = stored_shards(aws, settings)
    assert {shards[p["purchase_id"]] for p in hour} == {f"2026-11-25T09#{n}" for n in range(16)}
    # a small page size makes every shard answer in several pages: all of them are read
    ids = sorted(p["purchase_id"] for p in hour)
    assert sorted(read_ids(aws, settings, HOUR, Limit=5)) == ids  # one shard after the other (moto's default)
    assert sorted(read_ids(aws, settings, HOUR, Limit=5, threads=4)) == ids  # in parallel, as on AWS
    assert count_hour(aws, settings.purchases_table, settings.ingest_hour_index, "2026-11-25T09") == 200
    assert count_hour(aws, settings.purchases_table, settings.ingest_hour_index, "2026-11-25T10") == 20
    assert no_shard_threads()


def test_a_retried_purchase_lands_on_its_shard_again(settings: Settings, aws: AwsClients) -> None:
    purchases = stored_purchases(HOUR, 30, seed=3)
    put_purchases(aws, settings.purchases_table, purchases)
    first = stored_shards(aws, settings)
    put_purchases(aws, settings.purchases_table, purchases)  # delivered again
    assert stored_shards(aws, settings) == first
    assert count_hour(aws, settings.purchases_table, settings.ingest_hour_index, "2026-11-25T09") == 30


def test_changing_the_shard_count_for_new_hours_keeps_old_hours_readable(settings: Settings) -> None:
    old, new = stored_purchases(HOUR, 120, seed=4), stored_purchases(NEXT, 120, seed=5)
    put_purchases(with_shards(settings, 4), settings.purchases_table, old)  # written with 4 shards
    put_purchases(with_shards(settings, 8), settings.purchases_table, new)  # then raised to 8 for new hours

    raised = with_shards(settings, 8)
    assert {s.rsplit("#", 1)[1] for s in stored_shards(raised, settings).values()} == {str(n) for n in range(8)}
    assert sorted(read_ids(raised, settings, HOUR)) == sorted(p["purchase_id"] for p in old)
    assert sorted(read_ids(raised, settings, NEXT)) == sorted(p["purchase_id"] for p in new)

    # lowered to 2 for new hours: CART_INGEST_READ_SHARDS keeps the hours written with 8 whole ...
    lowered = with_shards(settings, 2, read_shards=8)
    assert sorted(read_ids(lowered, settings, HOUR)) == sorted(p["purchase_id"] for p in old)
    assert sorted(read_ids(lowered, settings, NEXT)) == sorted(p["purchase_id"] for p in new)
    # ... which is why it exists: reading 2 shards alone misses what was written to shards 2..7
    assert len(read_ids(with_shards(settings, 2), settings, NEXT)) < len(new)


def test_a_failing_shard_raises_its_error_and_leaves_no_thread(settings: Settings, aws: AwsClients) -> None:
    put_purchases(aws, settings.purchases_table, stored_purchases(HOUR, 50, seed=6))
    with pytest.raises(ClientError):
        list(query_hour(aws, settings.purchases_table, "no-such-index", "2026-11-25T09", threads=4))
    assert no_shard_threads()


def test_a_reader_that_stops_early_stops_every_shard(settings: Settings, aws: AwsClients) -> None:
    put_purchases(aws, settings.purchases_table, stored_purchases(HOUR, 200, seed=7))
    # one item per page: far more pages than are buffered, so readers block until the close frees them
    pages = query_hour(aws, settings.purchases_table, settings.ingest_hour_index, "2026-11-25T09", Limit=1, threads=4)
    assert len(next(pages)["Items"]) == 1
    pages.close()
    assert no_shard_threads()
