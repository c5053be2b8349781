"""The worker against the moto server: idempotent stores, partial batch failures, the DLQ with
reasons, the local runner and the Lambda handler."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from cart_api.runner import QueueRunner
from cart_api.settings import Settings
from cart_api.store import from_item, to_json
from cart_api.worker import SqsRecord, worker_for
from cart_aws.aws import AwsClients
from tests.conftest import VALID_PURCHASE, queue_depth, receive_all


def purchase(**changes: Any) -> dict[str, Any]:
    received = datetime.now(UTC)
    return {
        **VALID_PURCHASE,
        "purchase_id": str(uuid.uuid4()),
        "received_at": received.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "ingest_hour": received.strftime("%Y-%m-%dT%H"),
        "schema_version": "1.0.0",
        **changes,
    }


def record(body: str, receive_count: int = 1) -> SqsRecord:
    return SqsRecord(message_id=str(uuid.uuid4()), body=body, receive_count=receive_count)


def stored_items(aws: AwsClients, settings: Settings) -> list[dict[str, Any]]:
    return [from_item(i) for i in aws.dynamodb.scan(TableName=settings.purchases_table)["Items"]]


def test_valid_batch_is_stored_exactly_as_published(settings: Settings, aws: AwsClients) -> None:
    purchases = [purchase(buyer_id=f"B{i}") for i in range(12)]
    result = worker_for(settings, aws).process([record(to_json(p)) for p in purchases])
    assert len(result.stored) == 12
    assert result.retry == result.dead_lettered == []
    stored = {i["purchase_id"]: i for i in stored_items(aws, settings)}
    for p in purchases:
        item = stored[p["purchase_id"]]
        assert {**item, "total_amount": float(item["total_amount"])} == p


def test_duplicate_delivery_leaves_one_identical_item(settings: Settings, aws: AwsClients) -> None:
    p = purchase()
    worker = worker_for(settings, aws)
    same_batch = worker.process([record(to_json(p)), record(to_json(p))])
    assert len(same_batch.stored) == 2  # both deliveries handled, one item written
    before = stored_items(aws, settings)
    later = worker.process([record(to_json(p), receive_count=2)])
    assert len(later.stored) == 1
    assert stored_items(aws, settings) == before
    assert len(before) == 1


def test_poison_message_goes_to_the_dlq_with_its_reason_and_spares_its_neighbours(
    settings: Settings, aws: AwsClients
) -> None:
    good = [purchase(), purchase()]
    poison = [
        record("not json at all"),
        record(to_json(purchase(total_amount=-3))),
        record(json.dumps({"purchase_id": "x"})),
    ]
    batch = [record(to_json(good[0])), *poison, record(to_json(good[1]))]
    result = worker_for(settings, aws).process(batch)
    assert result.retry == []
    assert sorted(result.stored) == sorted([batch[0].message_id, batch[-1].message_id])
    assert {mid for mid, _ in result.dead_lettered} == {r.message_id for r in poison}
    assert {i["purchase_id"] for i in stored_items(aws, settings)} == {g["purchase_id"] for g in good}

    dead = {
        m["MessageAttributes"]["source_message_id"]["StringValue"]: m for m in receive_all(aws, settings.purchases_dlq)
    }
    assert set(dead) == {r.message_id for r in poison}
    amount = dead[poison[1].message_id]["MessageAttributes"]
    assert amount["failure_type"]["StringValue"] == "invalid"
    assert "total_amount" in amount["failure_reason"]["StringValue"]
    assert "greater than 0" in amount["failure_reason"]["StringValue"]
    assert "not JSON" in dead[poison[0].message_id]["MessageAttributes"]["failure_reason"]["StringValue"]
    assert dead[poison[0].message_id]["Body"] == "not json at all"  # the original body, untouched


def test_transient_failure_is_retried_then_dead_lettered_on_the_last_receive(
    settings: Settings, aws: AwsClients
) -> None:
    broken = settings.model_copy(update={"purchases_table": "no-such-table"})
    worker = worker_for(broken, aws)
    body = to_json(purchase())
    first = worker.process([record(body, receive_count=1)])
    assert len(first.retry) == 1
    assert "ResourceNotFoundException" in first.retry[0][1]
    assert queue_depth(aws, settings.purchases_dlq) == 0
    last = worker.process([record(body, receive_count=settings.max_receive_count)])
    assert last.retry == []
    assert len(last.dead_lettered) == 1
    (dead,) = receive_all(aws, settings.purchases_dlq)
    assert dead["MessageAttributes"]["failure_type"]["StringValue"] == "transient"
    assert "ResourceNotFoundException" in dead["MessageAttributes"]["failure_reason"]["StringValue"]
    assert dead["Body"] == body


def _publish(aws: AwsClients, settings: Settings, bodies: list[str]) -> None:
    arn = aws.topic_arn(settings.purchases_topic)
    for start in range(0, len(bodies), 10):
        aws.sns.publish_batch(
            TopicArn=arn,
            PublishBatchRequestEntries=[{"Id": str(i), "Message": b} for i, b in enumerate(bodies[start : start + 10])],
        )


def test_runner_drains_the_queue_and_deletes_only_what_it_handled(settings: Settings, aws: AwsClients) -> None:
    bodies = [to_json(purchase()) for _ in range(25)] + ["{broken"]
    _publish(aws, settings, bodies)
    runner = QueueRunner(settings, aws, wait_seconds=0)
    stats = runner.drain()
    assert (stats.received, stats.stored, stats.dead_lettered, stats.retried) == (26, 25, 1, 0)
    assert queue_depth(aws, settings.purchases_queue) == 0
    assert len(stored_items(aws, settings)) == 25


def test_runner_leaves_failed_messages_for_sqs_to_redeliver(settings: Settings, aws: AwsClients) -> None:
    _publish(aws, settings, [to_json(purchase())])
    broken = settings.model_copy(update={"purchases_table": "no-such-table"})
    runner = QueueRunner(broken, aws, wait_seconds=0)
    result = runner.poll_once()
    assert len(result.retry) == 1
    assert queue_depth(aws, settings.purchases_queue) == 1  # not deleted: in flight, to be retried


def test_runner_stops_gracefully(settings: Settings, aws: AwsClients) -> None:
    runner = QueueRunner(settings, aws, wait_seconds=1)
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop, 2))
    thread.start()
    _publish(aws, settings, [to_json(purchase()) for _ in range(5)])
    deadline = datetime.now(UTC).timestamp() + 20
    while len(stored_items(aws, settings)) < 5 and datetime.now(UTC).timestamp() < deadline:
        stop.wait(0.1)
    stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert runner.stats.stored == 5


def metric_sum(aws: AwsClients, name: str) -> float:
    now = datetime.now(UTC)
    points = aws.cloudwatch.get_metric_statistics(
        Namespace="CartLakehouse",
        MetricName=name,
        Dimensions=[{"Name": "Component", "Value": "worker"}],
        StartTime=now - timedelta(minutes=5),
        EndTime=now + timedelta(minutes=5),
        Period=600,
        Statistics=["Sum"],
    )["Datapoints"]
    return sum(p["Sum"] for p in points)


def test_the_worker_reports_what_it_stored_and_dead_lettered_to_cloudwatch(settings: Settings, aws: AwsClients) -> None:
    worker = worker_for(settings, aws)
    worker.process([record(to_json(purchase())), record(to_json(purchase())), record("poison")])
    worker.process([record(to_json(purchase()))])
    assert metric_sum(aws, "PurchasesStored") == 3
    assert metric_sum(aws, "PurchasesDeadLettered") == 1
    assert metric_sum(aws, "PurchasesRetried") == 0
