"""Bronze: the purchases of one ingest hour, exactly as DynamoDB holds them, as JSON lines.

The DynamoDB table is an external asset (the ingest service writes it, Dagster only reads it).
Bronze reads an hour through the ingest-hour index (a paginated Query, never a Scan) and
writes ``bronze/purchases/year=/month=/day=/hour=/purchases.jsonl`` as one file, replaced
atomically, so a rerun never duplicates rows and readers never see half a partition.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dagster import (
    AssetExecutionContext,
    AssetSpec,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    asset,
)

from cart_api.store import from_item, to_json
from cart_lakehouse.lake import Lake
from cart_lakehouse.layout import BRONZE, bronze_file
from cart_lakehouse.partitions import Hour, hourly_partitions, hours_between
from cart_lakehouse.resources import AwsResource, LakeResource

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

OWNER = "team:cart-platform"

purchases_table = AssetSpec(
    key=["dynamodb", "purchases"],
    group_name="ingest",
    description=(
        "Purchases stored by the ingest worker (API → SNS → SQS → worker) in the DynamoDB table, "
        "indexed by ingest hour. Written by the ingest service, not by Dagster."
    ),
    owners=[OWNER],
    kinds={"dynamodb"},
    metadata={"contract": "contracts/purchases.odcs.yaml", "index": "by-ingest-hour (ingest_hour, received_at)"},
)


def query_hour(dynamodb: "DynamoDBClient", table: str, index: str, hour: Hour) -> Iterator[dict[str, Any]]:
    """Every item of one ingest hour, page by page through the index (no Scan)."""
    kwargs: dict[str, Any] = {
        "TableName": table,
        "IndexName": index,
        "KeyConditionExpression": "ingest_hour = :h",
        "ExpressionAttributeValues": {":h": {"S": hour.ingest_hour}},
    }
    paginator = dynamodb.get_paginator("query")
    for page in paginator.paginate(**kwargs):
        yield from page.get("Items", [])


@dataclass(frozen=True)
class BronzeHour:
    hour: Hour
    rows: int
    bytes: int
    location: str


def write_bronze_hour(items: Iterator[dict[str, Any]], lake: Lake, hour: Hour) -> BronzeHour:
    """Write one hour's items as JSON lines (sorted by purchase_id, so reruns are byte-identical)."""
    lines = sorted(to_json(from_item(item)) for item in items)
    data = "".join(f"{line}\n" for line in lines).encode()
    location = lake.write_bytes(bronze_file(hour), data)
    return BronzeHour(hour, len(lines), len(data), location)


@asset(
    key=["bronze", "purchases"],
    group_name="bronze",
    deps=[purchases_table],
    partitions_def=hourly_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    owners=[OWNER],
    kinds={"dynamodb", "json"},
    description=(
        "Raw purchases of each ingest hour as JSON lines, exactly as stored in DynamoDB, under "
        "bronze/purchases/year=/month=/day=/hour=/. Replaced atomically on rerun."
    ),
)
def bronze_purchases(context: AssetExecutionContext, aws: AwsResource, lake: LakeResource) -> MaterializeResult[None]:
    settings = aws.settings()
    clients = aws.clients()
    the_lake = lake.lake()
    window = context.partition_time_window
    written = []
    for hour in hours_between(window.start, window.end):
        items = query_hour(clients.dynamodb, settings.purchases_table, settings.ingest_hour_index, hour)
        result = write_bronze_hour(items, the_lake, hour)
        context.log.info(f"bronze {hour.key}: {result.rows} purchases, {result.bytes} bytes → {result.location}")
        written.append(result)
    rows = sum(w.rows for w in written)
    metadata: dict[str, Any] = {
        "dagster/row_count": rows,
        "bytes": sum(w.bytes for w in written),
        "hours": len(written),
        "location": MetadataValue.path(the_lake.uri(BRONZE)),
        "source": f"dynamodb://{settings.purchases_table} (index {settings.ingest_hour_index})",
    }
    if len(written) > 1:
        metadata["rows_per_hour"] = MetadataValue.md(
            "| hour | rows | bytes |\n|---|---:|---:|\n"
            + "\n".join(f"| {w.hour.key} | {w.rows} | {w.bytes} |" for w in written)
        )
    else:
        metadata["file"] = MetadataValue.path(written[0].location) if written else ""
    return MaterializeResult(metadata=metadata)
