"""The ingest-hour index, sharded: how a purchase is placed in it and how one hour is read back whole.

DynamoDB gives one partition key about 1,000 writes/s, and a GSI that cannot keep up throttles
the table's writes. Keyed on ``ingest_hour`` alone, every write of an hour would land on one
index partition, so the worker would stall above ~1,000 purchases/s. The index is keyed instead
on ``ingest_shard`` = ``"<ingest_hour>#<n>"``, where ``n`` is a stable hash of the purchase id
modulo the shard count (``CART_INGEST_SHARDS``): a retried or redelivered purchase lands on the
same shard, and an hour's writes spread over that many partition keys (``docs/benchmarks.md``,
*write ceiling*, has the arithmetic).

``ingest_hour`` stays a data attribute of every purchase; ``ingest_shard`` is a storage detail
of the DynamoDB item only (``cart_api.store.from_item`` drops it, so no message, API answer or
bronze line carries it).

Readers query every shard of an hour, in parallel, and merge the pages. The shard count may
change between hours: readers query ``max(CART_INGEST_SHARDS, CART_INGEST_READ_SHARDS)`` shards,
so raising the count needs nothing, and after lowering it ``CART_INGEST_READ_SHARDS`` keeps
the hours written under the larger count readable (see ``AwsSettings.index_read_shards``).
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cart_aws.aws import AwsClients

SHARD_ATTRIBUTE = "ingest_shard"
SEPARATOR = "#"
# shards queried at once per hour: AwsClients pools 32 connections, and one Query per shard in
# flight is what hides the per-call latency; more threads than that only queue on the pool
QUERY_THREADS = 16
# the local moto server answers in one Python process and walks the whole table for each Query
# page: calls in flight only queue inside it, each waiting longer (a page of a 100k-item table
# takes ~10 s alone on a loaded machine, against the client's 30 s read timeout), so one at a time
EMULATOR_QUERY_THREADS = 1
# pages waiting for the consumer, across all shards: bounds memory (a page is at most 1 MB)
BUFFERED_PAGES = 32


def shard_of(purchase_id: str, shards: int) -> int:
    """The shard of a purchase: a stable hash of its id (never Python's salted ``hash``), so every
    process and every retry picks the same one."""
    digest = hashlib.blake2b(purchase_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


def shard_key(ingest_hour: str, purchase_id: str, shards: int) -> str:
    """The index partition key of a purchase: its ingest hour and its shard."""
    return f"{ingest_hour}{SEPARATOR}{shard_of(purchase_id, shards)}"


def hour_keys(ingest_hour: str, shards: int) -> list[str]:
    """Every index partition key of one hour under ``shards`` shards."""
    return [f"{ingest_hour}{SEPARATOR}{n}" for n in range(shards)]


def with_shard(item: dict[str, Any], shards: int) -> dict[str, Any]:
    """A DynamoDB item of a purchase with its ``ingest_shard``, added when it lacks one (an item
    stored before the index was sharded); an item that has one is returned as it is."""
    if SHARD_ATTRIBUTE in item or "ingest_hour" not in item or "purchase_id" not in item:
        return item
    key = shard_key(item["ingest_hour"]["S"], item["purchase_id"]["S"], shards)
    return {**item, SHARD_ATTRIBUTE: {"S": key}}


@dataclass(frozen=True)
class _Failed:
    error: BaseException


_DONE = object()


def query_hour(
    clients: AwsClients, table: str, index: str, ingest_hour: str, *, threads: int | None = None, **query: Any
) -> Generator[dict[str, Any], None, None]:
    """Every Query page of one ingest hour, from all its shards, paginated (never a Scan).

    ``query`` adds to each shard's Query (``Select="COUNT"``, ``ProjectionExpression``...). The
    shards are queried on ``threads`` threads (default ``QUERY_THREADS`` on AWS,
    ``EMULATOR_QUERY_THREADS`` against moto; boto3 clients are thread-safe) and
    their pages yielded as they arrive, at most ``BUFFERED_PAGES`` ahead of the consumer, so an
    hour of a million purchases is never held whole. The first error of any shard is raised as
    it is (a ``ClientError`` stays one); pages are in no particular order across shards. Closing
    the generator early stops the shards still being read.
    """
    shards = clients.settings.index_read_shards
    queries = [
        {
            "TableName": table,
            "IndexName": index,
            "KeyConditionExpression": f"{SHARD_ATTRIBUTE} = :shard",
            "ExpressionAttributeValues": {":shard": {"S": key}},
            **query,
        }
        for key in hour_keys(ingest_hour, shards)
    ]
    dynamodb = clients.dynamodb
    threads = threads or (EMULATOR_QUERY_THREADS if clients.settings.is_emulated else QUERY_THREADS)
    if threads == 1 or len(queries) == 1:
        for shard_query in queries:
            yield from dynamodb.get_paginator("query").paginate(**shard_query)  # type: ignore[misc]
        return

    pages: queue.Queue[object] = queue.Queue(maxsize=BUFFERED_PAGES)
    stop = threading.Event()  # the consumer stopped early (an error, or it stopped iterating)

    def read(shard_query: dict[str, Any]) -> None:
        try:
            if stop.is_set():
                return
            for page in dynamodb.get_paginator("query").paginate(**shard_query):
                pages.put(page)
                if stop.is_set():
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it: never lost
            pages.put(_Failed(exc))
        finally:
            pages.put(_DONE)

    running = len(queries)
    with ThreadPoolExecutor(max_workers=min(threads, running), thread_name_prefix="ingest-shard") as pool:
        for shard_query in queries:
            pool.submit(read, shard_query)
        try:
            while running:
                got = pages.get()
                if got is _DONE:
                    running -= 1
                elif isinstance(got, _Failed):
                    raise got.error
                else:
                    yield got  # type: ignore[misc]
        finally:
            # unblock every reader waiting on a full queue; each ends with _DONE
            stop.set()
            while running:
                if pages.get() is _DONE:
                    running -= 1


def count_hour(clients: AwsClients, table: str, index: str, ingest_hour: str) -> int:
    """How many purchases DynamoDB holds for one ingest hour (COUNT over every shard)."""
    return sum(int(page.get("Count", 0)) for page in query_hour(clients, table, index, ingest_hour, Select="COUNT"))
