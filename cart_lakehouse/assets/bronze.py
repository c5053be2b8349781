"""Bronze: the lake's durable history of purchases, one ingest hour per JSON-lines file.

The DynamoDB table is an external asset (the ingest service writes it, Dagster only reads it).
Bronze reads an hour through the ingest-hour index (a paginated Query of each of the hour's
shards, in parallel, never a Scan: ``cart_aws/ingest_shards.py``) and **merges** it into
``bronze/purchases/year=/month=/day=/hour=/purchases.jsonl``: every purchase bronze already holds
is kept, what DynamoDB holds beyond it is added, and a purchase in both is taken from whichever has
the newer ``received_at`` (DynamoDB on a tie, so a rerun reflects the table as it is now). The file
is rewritten whole, sorted and atomically, so a rerun never duplicates rows, gives the same bytes
for the same inputs, and readers never see half a partition.

Bronze never shrinks because the table did: a table that lost data (a local AWS restarted and
reseeded, a restored backup) must not erase history downstream. Purchases bronze holds that
DynamoDB no longer has are kept, counted per hour in the materialization's metadata, reported by
the WARN check ``bronze/purchases:source_not_shrunk`` and published to the alerts topic.
"""

import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as arrow
import pyarrow.json as arrow_json
from botocore.exceptions import BotoCoreError, ClientError
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetSpec,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    asset,
)

from cart_api.store import from_item, to_json
from cart_aws.aws import AwsClients
from cart_aws.ingest_shards import query_hour
from cart_lakehouse.alerts import Alert, publish_alert
from cart_lakehouse.lake import Lake
from cart_lakehouse.layout import BRONZE, bronze_file
from cart_lakehouse.partitions import Hour, hourly_partitions, hours_between
from cart_lakehouse.resources import AwsResource, LakeResource

OWNER = "team:cart-platform"
SOURCE_NOT_SHRUNK = "source_not_shrunk"
SAMPLE_SIZE = 10  # ids shown per alert and in metadata: enough to look a few up

purchases_table = AssetSpec(
    key=["dynamodb", "purchases"],
    group_name="ingest",
    description=(
        "Purchases stored by the ingest worker (API → SNS → SQS → worker) in the DynamoDB table, "
        "indexed by ingest hour. Written by the ingest service, not by Dagster."
    ),
    owners=[OWNER],
    kinds={"dynamodb"},
    metadata={
        "contract": "contracts/purchases.odcs.yaml",
        "index": "by-ingest-hour (ingest_shard = ingest_hour#shard, received_at)",
    },
)


def hour_items(clients: AwsClients, table: str, index: str, hour: Hour) -> Iterator[dict[str, Any]]:
    """Every item of one ingest hour, from all its shards of the index, page by page (no Scan)."""
    for page in query_hour(clients, table, index, hour.ingest_hour):
        yield from page.get("Items", [])


# one purchase as bronze holds it, by purchase_id: (received_at, its JSON line verbatim). received_at
# is format_timestamp's fixed-width UTC spelling, so string order is time order.
Version = tuple[str, str]

_KEYS = arrow.schema([("purchase_id", arrow.string()), ("received_at", arrow.string())])


def read_bronze(lake: Lake, hour: Hour) -> dict[str, Version] | None:
    """The purchases the hour's bronze file holds, by purchase_id; None when it was never written.

    pyarrow's JSON reader pulls out just the two keys (in C++: faster than json.loads per line
    on 100k lines); the lines themselves are kept verbatim, so what is kept is rewritten byte for byte.
    """
    relative = bronze_file(hour)
    if not lake.exists(relative):
        return None
    data = lake.read_bytes(relative)
    if not data:
        return {}
    lines = data.decode().splitlines()
    try:
        keys = arrow_json.read_json(
            io.BytesIO(data),
            parse_options=arrow_json.ParseOptions(explicit_schema=_KEYS, unexpected_field_behavior="ignore"),
        )
    except arrow.ArrowInvalid as exc:
        raise ValueError(
            f"{lake.uri(relative)} is not JSON lines ({exc}); only bronze/purchases writes it: "
            "inspect the file (and move it aside) before rerunning the hour"
        ) from exc
    ids, received = keys.column("purchase_id").to_pylist(), keys.column("received_at").to_pylist()
    if keys.num_rows != len(lines) or None in ids or len(set(ids)) != len(ids):
        raise ValueError(
            f"{lake.uri(relative)}: {len(lines)} lines, {len(set(ids) - {None})} distinct purchase ids; "
            "only bronze/purchases writes it, one line per purchase: inspect the file before rerunning the hour"
        )
    return dict(zip(ids, zip([r or "" for r in received], lines, strict=True), strict=True))


@dataclass(frozen=True)
class BronzeHour:
    hour: Hour
    rows: int
    bytes: int
    location: str
    added: int = 0  # purchases bronze did not hold before this run
    updated: int = 0  # purchases whose line changed (a newer version, or the same one stored anew)
    missing: tuple[str, ...] = field(default=())  # kept in bronze, no longer in DynamoDB (sorted)


def merge_bronze_hour(items: Iterable[dict[str, Any]], lake: Lake, hour: Hour) -> BronzeHour:
    """Merge one hour's DynamoDB items into its bronze file and rewrite it (sorted lines, atomic).

    Kept: every purchase bronze holds. Added: every purchase only DynamoDB holds. A purchase in
    both: the newer ``received_at`` wins, DynamoDB's on a tie (bronze shows the table as it is
    now for everything the table still holds).
    """
    merged: dict[str, Version] = {}
    for item in items:
        values = from_item(item)
        merged[values["purchase_id"]] = (str(values.get("received_at", "")), to_json(values))
    existing = read_bronze(lake, hour) or {}
    missing, updated = [], 0
    for purchase_id, old in existing.items():
        new = merged.get(purchase_id)
        if new is None:
            missing.append(purchase_id)
            merged[purchase_id] = old
        elif old[0] > new[0]:
            merged[purchase_id] = old  # bronze holds a newer version than the table now does
        elif old[1] != new[1]:
            updated += 1
    added = len(merged) - len(existing)
    lines = sorted(line for _, line in merged.values())
    data = "".join(f"{line}\n" for line in lines).encode()
    location = lake.write_bytes(bronze_file(hour), data)
    return BronzeHour(hour, len(lines), len(data), location, added, updated, tuple(sorted(missing)))


def shrink_alert(shrunk: Sequence[BronzeHour], table: str, run_url: str) -> Alert:
    """The alert for hours whose DynamoDB no longer holds purchases bronze has."""
    total = sum(len(h.missing) for h in shrunk)
    hours = [h.hour.key for h in shrunk]
    partition = hours[0] if len(hours) == 1 else f"{hours[0]}..{hours[-1]}"
    sample = [pid for h in shrunk for pid in h.missing][:SAMPLE_SIZE]
    per_hour = ", ".join(f"{h.hour.key}: {len(h.missing)}" for h in shrunk)
    return Alert(
        kind="source_shrunk",
        title=f"DynamoDB lost {total} purchases bronze still holds [{partition}]",
        reason=(
            f"DynamoDB table {table} no longer holds {total} purchases that bronze already has "
            f"({per_hour}); sample: {', '.join(sample)}. Bronze kept them, so silver and gold still "
            "count them. If the table lost data (a restarted or reseeded local AWS, a restore), restore "
            "those purchases to it; if they were deleted on purpose, remove their lines from the bronze "
            "files of those hours and rerun the hours."
        ),
        assets=("bronze/purchases",),
        partition=partition,
        run_url=run_url,
        details={"missing_per_hour": {h.hour.key: len(h.missing) for h in shrunk}, "sample": sample},
    )


@asset(
    key=["bronze", "purchases"],
    group_name="bronze",
    deps=[purchases_table],
    partitions_def=hourly_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    owners=[OWNER],
    kinds={"dynamodb", "json"},
    description=(
        "Raw purchases of each ingest hour as JSON lines, as stored in DynamoDB, under "
        "bronze/purchases/year=/month=/day=/hour=/. A rerun merges what DynamoDB holds now into "
        "the file (keeping every purchase it had), rewritten atomically."
    ),
    check_specs=[
        AssetCheckSpec(
            SOURCE_NOT_SHRUNK,
            asset=["bronze", "purchases"],
            partitions_def=hourly_partitions,
            description=(
                "DynamoDB still holds every purchase bronze has for the hour. A failure (WARN) means "
                "the table lost or deleted purchases; bronze kept them and an alert was published."
            ),
        )
    ],
)
# bare MaterializeResult: Dagster reads the annotation and accepts only the bare class for an asset
# that also reports a check (MaterializeResult[None] reads to it as a single output's type)
def bronze_purchases(context: AssetExecutionContext, aws: AwsResource, lake: LakeResource) -> MaterializeResult:  # type: ignore[type-arg]
    settings = aws.settings()
    clients = aws.clients()
    the_lake = lake.lake()
    window = context.partition_time_window
    written = []
    for hour in hours_between(window.start, window.end):
        items = hour_items(clients, settings.purchases_table, settings.ingest_hour_index, hour)
        result = merge_bronze_hour(items, the_lake, hour)
        context.log.info(
            f"bronze {hour.key}: {result.rows} purchases ({result.added} new, {result.updated} updated, "
            f"{len(result.missing)} kept that DynamoDB no longer holds), {result.bytes} bytes → {result.location}"
        )
        written.append(result)
    rows = sum(w.rows for w in written)
    metadata: dict[str, Any] = {
        "dagster/row_count": rows,
        "bytes": sum(w.bytes for w in written),
        "hours": len(written),
        "added": sum(w.added for w in written),
        "updated": sum(w.updated for w in written),
        "kept_missing_from_source": sum(len(w.missing) for w in written),
        "location": MetadataValue.path(the_lake.uri(BRONZE)),
        "source": (
            f"dynamodb://{settings.purchases_table} (index {settings.ingest_hour_index}, "
            f"{settings.index_read_shards} shards per hour)"
        ),
    }
    if len(written) > 1:
        metadata["rows_per_hour"] = MetadataValue.md(
            "| hour | rows | new | kept, not in DynamoDB | bytes |\n|---|---:|---:|---:|---:|\n"
            + "\n".join(f"| {w.hour.key} | {w.rows} | {w.added} | {len(w.missing)} | {w.bytes} |" for w in written)
        )
    else:
        metadata["file"] = MetadataValue.path(written[0].location) if written else ""
    shrunk = [w for w in written if w.missing]
    check_metadata: dict[str, Any] = {"missing": sum(len(w.missing) for w in shrunk)}
    if shrunk:
        run_url = f"{settings.dagster_ui_url.rstrip('/')}/runs/{context.run.run_id}"
        alert = shrink_alert(shrunk, settings.purchases_table, run_url)
        missing_per_hour = MetadataValue.json({w.hour.key: len(w.missing) for w in shrunk})
        sample = MetadataValue.json([pid for w in shrunk for pid in w.missing][:SAMPLE_SIZE])
        metadata.update(missing_per_hour=missing_per_hour, missing_sample=sample)
        check_metadata.update(missing_per_hour=missing_per_hour, sample=sample)
        context.log.warning(alert.reason)
        # the alert must not cost the hour its silver and gold: bronze is written and the check
        # fails visibly either way, so a topic that cannot be reached is reported, not raised
        try:
            message_id = publish_alert(clients.sns, clients.topic_arn(settings.alerts_topic), alert)
            check_metadata["alert"] = f"published to {settings.alerts_topic} ({message_id})"
        except (BotoCoreError, ClientError) as exc:
            check_metadata["alert"] = f"NOT published to {settings.alerts_topic}: {exc}"
            context.log.error(f"the source_not_shrunk alert could not be published: {exc}")
    check = AssetCheckResult(
        check_name=SOURCE_NOT_SHRUNK,
        passed=not shrunk,
        severity=AssetCheckSeverity.WARN,
        metadata=check_metadata,
        description=(
            None
            if not shrunk
            else f"DynamoDB no longer holds {check_metadata['missing']} purchases bronze has "
            f"({', '.join(f'{w.hour.key}: {len(w.missing)}' for w in shrunk)}); bronze kept them"
        ),
    )
    return MaterializeResult(metadata=metadata, check_results=[check])
