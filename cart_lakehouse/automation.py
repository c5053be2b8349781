"""Automation: the hourly bronze → silver → gold job, launched as soon as each hour has closed and
its purchases are stored, with a schedule five minutes after the hour as the backstop.

A schedule plus sensors rather than automation conditions, because bronze's upstream is the
DynamoDB table, an external asset that emits no materialization events to react to: the clock is
the real trigger. An hour is complete once it has closed and the worker has drained what SNS
delivered in its last seconds: the ``hour_closed`` sensor (``sensors/hour_closed.py``) watches the
purchases queue and launches the hour as soon as it is empty (or a grace has passed), within a
minute or so of the hour's end. ``hourly_lakehouse_schedule`` at HH:05 launches the hour only if
no run has covered it since it closed (the sensor was off, its daemon down, or its run failed), so
an hour is never run twice for being new. What changes an hour afterwards is covered by sensors
that know why it changed: ``late_data`` (new purchases for a closed hour) and ``dlq_redrive``
(redriven purchases stored). Failed blocking checks hold back what depends on them inside each
run, and ``alert_on_run_failure`` tells people.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, timedelta

from dagster import (
    AssetSelection,
    DagsterInstance,
    DagsterRunStatus,
    DefaultScheduleStatus,
    RunRecord,
    RunRequest,
    RunsFilter,
    ScheduleEvaluationContext,
    SkipReason,
    define_asset_job,
    schedule,
)

from cart_lakehouse.partitions import Hour, hourly_partitions

LAKEHOUSE_HOURLY = AssetSelection.groups("bronze", "silver", "gold", "star", "marts")
SCHEDULE_MINUTE = 5  # the backstop's minute of the hour; the hour_closed sensor hands over a minute before
TRIGGER_TAG = "cart/trigger"
# reruns for a reason found after the hour's first run; a DLQ rerun may even start before the
# hour's queue drained, so neither counts as the hour's run
RERUN_TRIGGERS = frozenset({"late_data", "dlq_redrive"})
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
# a run that failed or was canceled did not bring the hour to gold: the backstop tries again
LIVE_STATUSES = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.SUCCESS,
    DagsterRunStatus.MANAGED,
    DagsterRunStatus.SUSPENDED,
]

hourly_lakehouse_job = define_asset_job(
    "hourly_lakehouse",
    selection=LAKEHOUSE_HOURLY,
    description="Bronze → silver → gold for an hour (or a range of hours, as one run), with the quality gates.",
)


def covers(tags: Mapping[str, str], hour: Hour) -> bool:
    """Whether a run with these tags materializes ``hour`` (its partition, or a range holding it)."""
    if tags.get(PARTITION_TAG) == hour.key:
        return True
    start, end = tags.get(RANGE_START_TAG), tags.get(RANGE_END_TAG)
    # partition keys (yyyy-MM-dd-HH:mm) sort as the hours they name
    return start is not None and end is not None and start <= hour.key <= end


def runs_since_close(instance: DagsterInstance, hour: Hour) -> list[RunRecord]:
    """Runs of the hourly job that cover ``hour``, created after it closed, not failed or canceled,
    and not reruns of ``late_data`` or ``dlq_redrive``: the hour's first run, whoever launched it
    (the ``hour_closed`` sensor, the schedule, cart-dev's bootstrap, a person)."""
    records = instance.get_run_records(
        RunsFilter(job_name=hourly_lakehouse_job.name, created_after=hour.end, statuses=LIVE_STATUSES)
    )
    return [r for r in records if covers(r.dagster_run.tags, hour) and trigger_of(r) not in RERUN_TRIGGERS]


def trigger_of(record: RunRecord) -> str:
    """What launched a run: our ``cart/trigger`` tag, else Dagster's sensor or schedule tag, else a person."""
    tags = record.dagster_run.tags
    return tags.get(TRIGGER_TAG) or tags.get("dagster/sensor_name") or tags.get("dagster/schedule_name") or "a person"


def describe_run(record: RunRecord) -> str:
    run = record.dagster_run
    return f"run {run.run_id[:8]} ({run.status.value}, launched by {trigger_of(record)})"


@schedule(
    job=hourly_lakehouse_job,
    cron_schedule=f"{SCHEDULE_MINUTE} * * * *",
    execution_timezone="UTC",
    name="hourly_lakehouse_schedule",
    default_status=DefaultScheduleStatus.RUNNING,
    description=(
        f"Backstop: at HH:{SCHEDULE_MINUTE:02d} UTC, materializes the hour that just closed unless a run "
        "(usually the hour_closed sensor's) has covered it since it closed."
    ),
)
def hourly_schedule(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
    tick = context.scheduled_execution_time.astimezone(UTC)
    hour = Hour(tick.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1))
    first = hourly_partitions.get_first_partition_key()
    if first is None or hour < Hour.from_key(first):
        return SkipReason(f"hour {hour.key} is before the first partition ({first}, CART_PARTITIONS_START)")
    done = runs_since_close(context.instance, hour)
    if done:
        return SkipReason(f"hour {hour.key} already launched since it closed: {describe_run(done[0])}")
    return RunRequest(run_key=hour.key, partition_key=hour.key, tags={TRIGGER_TAG: "schedule"})
