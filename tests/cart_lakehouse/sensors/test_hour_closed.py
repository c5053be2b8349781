"""The hour_closed sensor launches an hour once it has closed and the purchases queue is empty (or
the grace has passed), once; the HH:05 schedule does not run that hour again. The time is a clock
the tests set on either side of an hour's end; the queue is the moto server's."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from dagster import (
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    RunRequest,
    SensorResult,
    SkipReason,
    build_schedule_context,
    build_sensor_context,
    instance_for_test,
)

from cart_api.settings import Settings
from cart_aws.aws import AwsClients
from cart_lakehouse.automation import hourly_schedule
from cart_lakehouse.definitions import defs
from cart_lakehouse.partitions import Hour
from cart_lakehouse.resources import AwsResource
from cart_lakehouse.sensors.hour_closed import hour_closed_sensor

# the last hour closed for real: a partition that exists, and runs recorded now are after its end
HOUR = Hour(datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1))


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[DagsterInstance]:
    """An instance on disk (a schedule's context needs one it can reference), without daemons."""
    with instance_for_test(temp_dir=str(tmp_path)) as instance:
        yield instance


def at(seconds: float) -> Callable[[], datetime]:
    """A clock reading ``seconds`` after HOUR's end (negative: before it)."""
    return lambda: HOUR.end + timedelta(seconds=seconds)


def tick(
    endpoint: str,
    seconds: float,
    cursor: str | None = None,
    instance: DagsterInstance | None = None,
    started: datetime | None = None,
) -> SensorResult | SkipReason:
    context = build_sensor_context(
        cursor=cursor,
        instance=instance or DagsterInstance.ephemeral(),
        resources={"aws": AwsResource(aws_endpoint_url=endpoint)},
        last_sensor_start_time=started.timestamp() if started else None,
    )
    result = hour_closed_sensor(at(seconds))(context)
    assert isinstance(result, SensorResult | SkipReason)
    return result


def launched(result: SensorResult | SkipReason) -> RunRequest:
    assert isinstance(result, SensorResult), result
    (request,) = result.run_requests or []
    return request


def waiting(result: SensorResult | SkipReason) -> str:
    """The skip message of a tick that launched nothing and left the cursor alone."""
    assert isinstance(result, SkipReason), result
    return result.skip_message or ""


def send(aws: AwsClients, queue: str, count: int) -> None:
    url = aws.queue_url(queue)
    for i in range(count):
        aws.sqs.send_message(QueueUrl=url, MessageBody=f'{{"n": {i}}}')


def receive(aws: AwsClients, queue: str) -> list[str]:
    """Receive what is visible (it stays in flight), returning the receipt handles."""
    got = aws.sqs.receive_message(QueueUrl=aws.queue_url(queue), MaxNumberOfMessages=10, WaitTimeSeconds=0)
    return [m["ReceiptHandle"] for m in got.get("Messages", [])]


def delete(aws: AwsClients, queue: str, handles: list[str]) -> None:
    url = aws.queue_url(queue)
    for handle in handles:
        aws.sqs.delete_message(QueueUrl=url, ReceiptHandle=handle)


def record_run(instance: DagsterInstance, request: RunRequest, status: DagsterRunStatus) -> DagsterRun:
    """The run the daemon creates for a request: its tags plus the partition."""
    tags = {**request.tags, **({"dagster/partition": request.partition_key} if request.partition_key else {})}
    return instance.create_run_for_job(defs.resolve_job_def("hourly_lakehouse"), tags=tags, status=status)


def test_waits_while_the_queue_holds_messages_then_launches_the_hour_once(settings: Settings, aws: AwsClients) -> None:
    endpoint, queue = settings.aws_endpoint_url, settings.purchases_queue
    previous = Hour(HOUR.start - timedelta(hours=1))
    send(aws, queue, 3)
    # before the end of the hour: the hour before is the last closed one, handled already
    assert "handled" in waiting(tick(endpoint, -1, cursor=previous.key))

    message = waiting(tick(endpoint, 5, cursor=previous.key))
    assert "3 messages in the queue" in message
    assert HOUR.key in message

    handles = receive(aws, queue)  # the worker holds them: in flight, not stored yet
    assert len(handles) == 3
    assert "3 messages in the queue" in waiting(tick(endpoint, 20, cursor=previous.key))

    delete(aws, queue, handles)  # stored
    result = tick(endpoint, 35, cursor=previous.key)
    request = launched(result)
    assert request.partition_key == HOUR.key
    assert request.run_key == f"hour_closed:{HOUR.key}"
    assert request.tags["cart/trigger"] == "hour_closed"
    assert request.tags["cart/launch_reason"] == "queue empty"
    assert request.tags["cart/launched_after_close_s"] == "35.0"
    assert isinstance(result, SensorResult)
    assert result.cursor == HOUR.key

    send(aws, queue, 2)  # the next hour's purchases: not this hour's business
    for seconds in (50, 65, 200):
        assert "handled" in waiting(tick(endpoint, seconds, cursor=result.cursor))


def test_launches_after_the_grace_when_the_queue_never_empties(settings: Settings, aws: AwsClients) -> None:
    send(aws, settings.purchases_queue, 4)  # steady traffic: the next hour's purchases keep it busy
    assert "launching anyway 60 s after" in waiting(tick(settings.aws_endpoint_url, 59.9))
    request = launched(tick(settings.aws_endpoint_url, 60))
    assert request.partition_key == HOUR.key
    assert request.tags["cart/launch_reason"] == "grace of 60 s passed, 4 messages in the queue"


def test_the_grace_is_configurable(settings: Settings, aws: AwsClients, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CART_HOUR_CLOSED_GRACE_SECONDS", "20")
    send(aws, settings.purchases_queue, 1)
    assert "launching anyway 20 s after" in waiting(tick(settings.aws_endpoint_url, 19))
    assert launched(tick(settings.aws_endpoint_url, 20)).partition_key == HOUR.key


def test_the_dead_letter_queue_is_not_waited_for(settings: Settings, aws: AwsClients) -> None:
    send(aws, settings.purchases_dlq, 2)  # the dlq_redrive sensor's business
    assert launched(tick(settings.aws_endpoint_url, 15)).tags["cart/launch_reason"] == "queue empty"


def test_an_unreachable_queue_waits_for_the_grace_then_launches() -> None:
    with socket.socket() as closed:  # bound, not listening: connections refused
        closed.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{closed.getsockname()[1]}"
        message = waiting(tick(endpoint, 15))
        assert "unreachable" in message
        assert endpoint in message
        request = launched(tick(endpoint, 60))
    assert request.partition_key == HOUR.key
    assert "grace of 60 s passed" in request.tags["cart/launch_reason"]


def test_an_hour_closed_minutes_ago_is_left_to_the_schedule(settings: Settings) -> None:
    message = waiting(tick(settings.aws_endpoint_url, 4 * 60))
    assert "left to the HH:05 schedule" in message


def test_an_hour_that_closed_before_the_sensor_started_is_left_to_the_schedule(settings: Settings) -> None:
    endpoint = settings.aws_endpoint_url
    message = waiting(tick(endpoint, 15, started=HOUR.end + timedelta(seconds=10)))  # a first start
    assert "closed before this sensor started" in message
    assert launched(tick(endpoint, 15, started=HOUR.end - timedelta(seconds=1))).partition_key == HOUR.key


def test_an_hour_another_run_covered_since_it_closed_is_not_launched(
    settings: Settings, instance: DagsterInstance
) -> None:
    bootstrap = RunRequest(
        tags={
            "cart/trigger": "cart-dev",
            "dagster/asset_partition_range_start": Hour(HOUR.start - timedelta(hours=5)).key,
            "dagster/asset_partition_range_end": HOUR.key,
        }
    )
    run = record_run(instance, bootstrap, DagsterRunStatus.STARTED)
    result = tick(settings.aws_endpoint_url, 15, instance=instance)
    assert isinstance(result, SensorResult)
    assert result.run_requests == []
    assert result.cursor == HOUR.key
    assert isinstance(result.skip_reason, SkipReason)
    assert f"run {run.run_id[:8]} (STARTED, launched by cart-dev)" in (result.skip_reason.skip_message or "")


def test_the_schedule_does_not_run_an_hour_the_sensor_launched(settings: Settings, instance: DagsterInstance) -> None:
    five_past = HOUR.end + timedelta(minutes=5)

    def schedule_tick() -> RunRequest | SkipReason:
        result = hourly_schedule(build_schedule_context(instance=instance, scheduled_execution_time=five_past))
        assert isinstance(result, RunRequest | SkipReason)
        return result

    request = launched(tick(settings.aws_endpoint_url, 15, instance=instance))
    run = record_run(instance, request, DagsterRunStatus.SUCCESS)
    skipped = schedule_tick()
    assert isinstance(skipped, SkipReason)
    assert f"{HOUR.key} already launched since it closed" in (skipped.skip_message or "")
    assert "launched by hour_closed" in (skipped.skip_message or "")

    instance.report_run_failed(run)  # a failed run did not bring the hour to gold: the backstop runs it
    backstop = schedule_tick()
    assert isinstance(backstop, RunRequest)
    assert backstop.partition_key == HOUR.key
    assert backstop.tags["cart/trigger"] == "schedule"


def test_the_schedule_runs_an_hour_nobody_ran_and_does_not_count_reruns(instance: DagsterInstance) -> None:
    five_past = HOUR.end + timedelta(minutes=5)
    for trigger in ("late_data", "dlq_redrive"):  # reruns are not the hour's run
        rerun = RunRequest(partition_key=HOUR.key, tags={"cart/trigger": trigger})
        record_run(instance, rerun, DagsterRunStatus.SUCCESS)
    request = hourly_schedule(build_schedule_context(instance=instance, scheduled_execution_time=five_past))
    assert isinstance(request, RunRequest)
    assert request.partition_key == HOUR.key
    assert request.run_key == HOUR.key

    before_start = datetime(2000, 1, 1, 0, 5, tzinfo=UTC)
    skipped = hourly_schedule(build_schedule_context(instance=instance, scheduled_execution_time=before_start))
    assert isinstance(skipped, SkipReason)
    assert "before the first partition" in (skipped.skip_message or "")
