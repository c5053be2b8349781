"""Late data: purchases stored for an hour whose bronze is already written rerun that hour, so gold
converges without anyone clicking.

The rule: an hour is rerun only when DynamoDB holds a purchase bronze lacks. Bronze merges (it
keeps everything it holds and adds what DynamoDB has beyond it), so that is the one case a rerun
changes anything. Comparing counts is not enough: a table that lost 3 purchases and received 2
late ones has fewer items than bronze yet new ones, and a table that lost data (a local AWS
restarted and reseeded) has fewer and nothing new, and must not make the lake follow it.

Each tick, for each closed hour of the look-back window that has a bronze file:

1. COUNT the hour's purchases in DynamoDB (a query of each of the hour's shards of the ingest-hour
   index, in parallel: little data back).
2. If the count equals the one the cursor remembers for the hour, the hour was already compared
   at that count: nothing to do. (A deletion and an insertion that cancel out between two ticks
   go unseen until the hour's count next changes, or forever if it never does; the price of not
   reading every id of 48 hours each minute.)
3. Otherwise compare ids: more items than bronze has lines means some are new (pigeonhole);
   else read the hour's ids through the index (ProjectionExpression purchase_id) and rerun if any
   is not in bronze. Ids bronze has and DynamoDB lacks are logged, never rerun for: the asset's
   ``source_not_shrunk`` check reports them when the hour next runs.

Hours to rerun that are adjacent become one run over the range (the run tags a single-run
backfill uses), so a burst of late data is one Spark job, not one run per hour. While the table
is unreachable, or empty for every watched hour (a reset local AWS), the sensor skips with the
reason and leaves its cursor as it was.
"""

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from botocore.exceptions import BotoCoreError, ClientError
from dagster import DefaultSensorStatus, RunRequest, SensorEvaluationContext, SensorResult, SkipReason, sensor

from cart_aws.aws import AwsClients
from cart_aws.ingest_shards import count_hour, query_hour
from cart_lakehouse.assets.bronze import read_bronze
from cart_lakehouse.automation import hourly_lakehouse_job
from cart_lakehouse.layout import bronze_file
from cart_lakehouse.partitions import Hour, hourly_partitions
from cart_lakehouse.resources import AwsResource, LakeResource

LOOKBACK_HOURS = 48
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def hour_count(clients: AwsClients, table: str, index: str, hour: Hour) -> int:
    """How many purchases DynamoDB holds for the hour (COUNT over every shard of the index, paginated)."""
    return count_hour(clients, table, index, hour.ingest_hour)


def hour_ids(clients: AwsClients, table: str, index: str, hour: Hour) -> set[str]:
    """The purchase ids DynamoDB holds for the hour, through every shard of the index (only the key
    comes back)."""
    pages = query_hour(clients, table, index, hour.ingest_hour, ProjectionExpression="purchase_id")
    return {item["purchase_id"]["S"] for page in pages for item in page.get("Items", [])}


def closed_hours(now: datetime, lookback: int, first_key: str) -> list[Hour]:
    current = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    first = Hour.from_key(first_key)
    hours = [Hour(current - timedelta(hours=h)) for h in range(1, lookback + 1)]
    return [h for h in reversed(hours) if h >= first]


def adjacent_runs(hours: Sequence[Hour]) -> list[list[Hour]]:
    """Sorted hours grouped into runs of consecutive hours."""
    groups: list[list[Hour]] = []
    for hour in sorted(hours):
        if groups and groups[-1][-1].end == hour.start:
            groups[-1].append(hour)
        else:
            groups.append([hour])
    return groups


def rerun_request(hours: Sequence[Hour], counts: dict[str, int]) -> RunRequest:
    """One run for consecutive hours; the run key changes with any of their DynamoDB counts."""
    tags = {"cart/trigger": "late_data"}
    if len(hours) == 1:
        (hour,) = hours
        return RunRequest(run_key=f"late:{hour.key}:{counts[hour.key]}", partition_key=hour.key, tags=tags)
    first, last = hours[0].key, hours[-1].key
    return RunRequest(
        run_key=f"late:{first}..{last}:{','.join(str(counts[h.key]) for h in hours)}",
        tags={**tags, RANGE_START_TAG: first, RANGE_END_TAG: last},
    )


@sensor(
    name="late_data",
    job=hourly_lakehouse_job,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        f"Reruns already materialized hours (last {LOOKBACK_HOURS} h) when DynamoDB holds purchases "
        "their bronze lacks, adjacent hours as one run; never because DynamoDB holds fewer."
    ),
)
def late_data(context: SensorEvaluationContext, aws: AwsResource, lake: LakeResource) -> SensorResult | SkipReason:
    settings = aws.settings()
    clients = aws.clients()
    the_lake = lake.lake()
    table, index = settings.purchases_table, settings.ingest_hour_index
    seen: dict[str, int] = json.loads(context.cursor) if context.cursor else {}
    first_key = hourly_partitions.get_first_partition_key()
    if first_key is None:
        return SkipReason("no partitions yet")
    window = closed_hours(datetime.now(UTC), LOOKBACK_HOURS, first_key)
    # an hour is watched once bronze wrote it (the schedule materializes it first)
    watched = [h for h in window if the_lake.exists(bronze_file(h))]
    if not watched:
        return SensorResult(skip_reason=SkipReason(f"no materialized hour in the last {LOOKBACK_HOURS} h"), cursor="{}")
    try:
        counts = {h.key: hour_count(clients, table, index, h) for h in watched}
        if not any(counts.values()):
            return SkipReason(
                f"DynamoDB table {table} holds no purchases for any of the {len(watched)} materialized hours "
                f"of the last {LOOKBACK_HOURS} h (reset or restored?): nothing to rerun, bronze keeps what it has"
            )
        late: list[Hour] = []
        for hour in watched:
            stored = counts[hour.key]
            if seen.get(hour.key) == stored:
                continue  # compared at this count already
            bronze = read_bronze(the_lake, hour) or {}
            if stored > len(bronze):
                new = stored - len(bronze)  # at least this many: more items than bronze has lines
                gone = None
            else:
                ids = hour_ids(clients, table, index, hour)
                new, gone = len(ids - bronze.keys()), len(bronze.keys() - ids)
            if gone:
                context.log.warning(
                    f"hour {hour.key}: DynamoDB lacks {gone} of bronze's {len(bronze)} purchases "
                    "(not a reason to rerun: bronze keeps them)"
                )
            if new:
                context.log.info(f"hour {hour.key}: {new} purchases in DynamoDB that bronze lacks: rerunning")
                late.append(hour)
            seen[hour.key] = stored
    except (BotoCoreError, ClientError) as exc:
        return SkipReason(f"DynamoDB table {table} unreachable ({exc}): nothing compared, retrying next tick")
    keep = {h.key for h in watched}
    cursor = json.dumps({k: v for k, v in sorted(seen.items()) if k in keep})
    if not late:
        return SensorResult(skip_reason=SkipReason("no purchases in DynamoDB that bronze lacks"), cursor=cursor)
    runs = [rerun_request(group, counts) for group in adjacent_runs(late)]
    return SensorResult(run_requests=runs, cursor=cursor)
