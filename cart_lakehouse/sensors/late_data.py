"""Late data: purchases stored for an hour whose bronze is already written rerun that hour, so gold
converges without anyone clicking.

For each closed hour of the look-back window that has a bronze file, the sensor compares what
DynamoDB holds for the hour (a COUNT query on the ingest-hour index) with what bronze holds, and
requests a run of the hour when they differ. The cursor remembers the count each hour was last
seen (or rerun) with, so every hour's bronze file is read at most once, and the run key
``late:<hour>:<count>`` makes each new count a new run.
"""

import json
from datetime import UTC, datetime, timedelta

from dagster import DefaultSensorStatus, RunRequest, SensorEvaluationContext, SensorResult, SkipReason, sensor

from cart_aws.aws import AwsClients
from cart_lakehouse.automation import hourly_lakehouse_job
from cart_lakehouse.lake import Lake
from cart_lakehouse.layout import bronze_file
from cart_lakehouse.partitions import Hour, hourly_partitions
from cart_lakehouse.resources import AwsResource, LakeResource

LOOKBACK_HOURS = 48


def hour_count(clients: AwsClients, table: str, index: str, hour: Hour) -> int:
    """How many purchases DynamoDB holds for the hour (COUNT through the index, paginated)."""
    total = 0
    paginator = clients.dynamodb.get_paginator("query")
    for page in paginator.paginate(
        TableName=table,
        IndexName=index,
        KeyConditionExpression="ingest_hour = :h",
        ExpressionAttributeValues={":h": {"S": hour.ingest_hour}},
        Select="COUNT",
    ):
        total += int(page.get("Count", 0))
    return total


def bronze_count(lake: Lake, hour: Hour) -> int | None:
    """Lines in the hour's bronze file; None when the hour has not been materialized."""
    relative = bronze_file(hour)
    if not lake.exists(relative):
        return None
    return lake.read_bytes(relative).count(b"\n")


def closed_hours(now: datetime, lookback: int, first_key: str) -> list[Hour]:
    current = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    first = Hour.from_key(first_key)
    hours = [Hour(current - timedelta(hours=h)) for h in range(1, lookback + 1)]
    return [h for h in reversed(hours) if h >= first]


@sensor(
    name="late_data",
    job=hourly_lakehouse_job,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        f"Reruns an already materialized hour (last {LOOKBACK_HOURS} h) when DynamoDB holds new purchases for it."
    ),
)
def late_data(context: SensorEvaluationContext, aws: AwsResource, lake: LakeResource) -> SensorResult | SkipReason:
    settings = aws.settings()
    clients = aws.clients()
    the_lake = lake.lake()
    seen: dict[str, int] = json.loads(context.cursor) if context.cursor else {}
    first_key = hourly_partitions.get_first_partition_key()
    if first_key is None:
        return SkipReason("no partitions yet")
    runs = []
    for hour in closed_hours(datetime.now(UTC), LOOKBACK_HOURS, first_key):
        known = seen.get(hour.key)
        if known is None:
            known = bronze_count(the_lake, hour)
            if known is None:
                continue  # not materialized yet: the schedule will do it
        stored = hour_count(clients, settings.purchases_table, settings.ingest_hour_index, hour)
        if stored != known:
            context.log.info(f"hour {hour.key}: {stored} purchases stored, {known} in bronze: rerunning")
            runs.append(
                RunRequest(
                    run_key=f"late:{hour.key}:{stored}",
                    partition_key=hour.key,
                    tags={"cart/trigger": "late_data"},
                )
            )
        seen[hour.key] = stored
    oldest = closed_hours(datetime.now(UTC), LOOKBACK_HOURS, first_key)
    keep = {h.key for h in oldest}
    cursor = json.dumps({k: v for k, v in sorted(seen.items()) if k in keep})
    if not runs:
        return SensorResult(skip_reason=SkipReason("no late purchases"), cursor=cursor)
    return SensorResult(run_requests=runs, cursor=cursor)
