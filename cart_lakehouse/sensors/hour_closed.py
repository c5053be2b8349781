"""Freshness: the ``hour_closed`` sensor launches an hour's bronze → silver → gold run as soon as the
hour has closed and its purchases are stored, instead of waiting for the HH:05 schedule.

An hour is complete when it has closed and nothing accepted before its end is still on its way to
DynamoDB. SQS tells no message's age without receiving it (which would take it from the worker), so
the sensor judges by the purchases queue's depth (visible + in flight): empty means every purchase
accepted so far is stored. Under steady traffic the queue may never be empty at the moment of a
tick (next hour's purchases keep arriving), so after ``CART_HOUR_CLOSED_GRACE_SECONDS`` (60 s)
past the hour's end it launches anyway: the worker keeps the queue seconds long, and a purchase
that still arrives later is picked up by ``late_data``. The dead-letter queue is not waited for:
the ``dlq_redrive`` sensor reruns the hours of what it redrives.

Each tick (every 15 s) looks at the most recently closed hour only, during the first
``SCHEDULE_MINUTE - 1`` minutes after it closed; then it is the HH:05 schedule's, so the two never
both launch an hour (the schedule skips an hour some run has covered since it closed). The cursor
is the last hour handled; the run key ``hour_closed:<hour>`` keeps even a lost cursor from running
an hour twice. An hour another run already covered since it closed (cart-dev's bootstrap, a
person) is not launched again, nor is an hour that closed before the sensor was first started.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from botocore.exceptions import BotoCoreError, ClientError
from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from cart_lakehouse.automation import (
    SCHEDULE_MINUTE,
    TRIGGER_TAG,
    describe_run,
    hourly_lakehouse_job,
    runs_since_close,
)
from cart_lakehouse.partitions import Hour, hourly_partitions
from cart_lakehouse.resources import AwsResource

SENSOR_NAME = "hour_closed"
INTERVAL_SECONDS = 15
HANDOVER = timedelta(minutes=SCHEDULE_MINUTE - 1)  # after this the hour is the schedule's


def utc_now() -> datetime:
    return datetime.now(UTC)


def last_closed_hour(now: datetime) -> Hour:
    return Hour(now.astimezone(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1))


def hour_closed_sensor(clock: Callable[[], datetime] = utc_now) -> SensorDefinition:
    """The sensor, reading the time from ``clock`` (tests and the freshness benchmark cross an
    hour's end with a clock of their own)."""

    @sensor(
        name=SENSOR_NAME,
        job=hourly_lakehouse_job,
        minimum_interval_seconds=INTERVAL_SECONDS,
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            "Launches the hour that just closed, bronze → silver → gold, once the purchases queue is empty "
            "(or CART_HOUR_CLOSED_GRACE_SECONDS after its end); the HH:05 schedule is the backstop."
        ),
    )
    def hour_closed(context: SensorEvaluationContext, aws: AwsResource) -> SensorResult | SkipReason:
        now = clock().astimezone(UTC)
        hour = last_closed_hour(now)
        first = hourly_partitions.get_first_partition_key()
        if first is None or hour < Hour.from_key(first):
            return SkipReason(f"hour {hour.key} is before the first partition ({first}, CART_PARTITIONS_START)")
        if context.cursor == hour.key:
            closes = hour.end + timedelta(hours=1)
            return SkipReason(f"hour {hour.key} handled; the next hour closes at {closes:%H:%M} UTC")
        started = context.last_sensor_start_time
        if started is not None and hour.end.timestamp() < started:
            # a first start (make run --fresh): the hour is cart-dev's bootstrap's or the schedule's, and
            # launching it now could run before reference/products exists
            return SkipReason(
                f"hour {hour.key} closed before this sensor started: left to the HH:{SCHEDULE_MINUTE:02d} schedule"
            )
        since_close = now - hour.end
        if since_close >= HANDOVER:
            return SkipReason(
                f"hour {hour.key} closed {since_close.total_seconds() / 60:.0f} min ago: left to the "
                f"HH:{SCHEDULE_MINUTE:02d} schedule (the sensor launches an hour in its first "
                f"{HANDOVER.total_seconds() / 60:.0f} min)"
            )
        done = runs_since_close(context.instance, hour)
        if done:
            return SensorResult(
                skip_reason=SkipReason(f"hour {hour.key} already launched since it closed: {describe_run(done[0])}"),
                cursor=hour.key,
            )

        settings = aws.settings()
        grace = timedelta(seconds=settings.hour_closed_grace_seconds)
        queue = settings.purchases_queue
        try:
            depth: int | None = aws.clients().queue_depth(queue)
            why = "queue empty" if depth == 0 else f"{depth} messages in the queue"
        except (BotoCoreError, ClientError) as exc:
            depth, why = None, f"queue {queue} unreachable ({exc})"
        waited = since_close.total_seconds()
        if depth != 0 and since_close < grace:
            return SkipReason(
                f"hour {hour.key} closed {waited:.0f} s ago; {why}: waiting for the worker to store them "
                f"(launching anyway {grace.total_seconds():.0f} s after the hour's end)"
            )
        reason = why if depth == 0 else f"grace of {grace.total_seconds():.0f} s passed, {why}"
        context.log.info(f"hour {hour.key} closed {waited:.0f} s ago, {reason}: launching it")
        request = RunRequest(
            run_key=f"{SENSOR_NAME}:{hour.key}",
            partition_key=hour.key,
            tags={
                TRIGGER_TAG: SENSOR_NAME,
                "cart/launched_after_close_s": f"{waited:.1f}",
                "cart/launch_reason": reason[:200],
            },
        )
        return SensorResult(run_requests=[request], cursor=hour.key)

    return hour_closed


hour_closed = hour_closed_sensor()
