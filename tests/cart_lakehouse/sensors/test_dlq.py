"""The DLQ sensor: redrive transient failures, quarantine contract breakers, rerun the hours once stored."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from dagster import SensorResult, SkipReason

from cart_api.runner import QueueRunner
from cart_api.settings import Settings
from cart_api.store import to_json
from cart_aws.aws import AwsClients
from cart_dev.harness import tick_dlq_sensor
from cart_dev.seed import stored_purchases
from cart_lakehouse.dlq import DlqTriage
from cart_lakehouse.lake import Lake
from cart_lakehouse.partitions import Hour
from cart_lakehouse.sensors.dlq import DlqCursor
from tests.cart_lakehouse.sensors.test_alerts import alerts, subscribe_alerts
from tests.conftest import queue_depth, receive_all

HOUR = Hour(datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2))


def dead_letter(aws: AwsClients, settings: Settings, body: str, failure_type: str | None = None) -> None:
    attributes: dict[str, Any] = {}
    if failure_type:
        attributes = {
            "failure_type": {"DataType": "String", "StringValue": failure_type},
            "failure_reason": {"DataType": "String", "StringValue": f"{failure_type} failure"},
        }
    aws.sqs.send_message(QueueUrl=aws.queue_url(settings.purchases_dlq), MessageBody=body, MessageAttributes=attributes)


def tick(settings: Settings, root: Path, cursor: str | None = None) -> SensorResult | SkipReason:
    return tick_dlq_sensor(settings, str(root), cursor)


def test_redrives_quarantines_and_reruns_the_hour_once_stored(
    settings: Settings, aws: AwsClients, tmp_path: Path
) -> None:
    throttled, also_throttled = stored_purchases(HOUR.start, 2, seed=8)
    dead_letter(aws, settings, to_json(throttled), "transient")
    dead_letter(aws, settings, to_json(also_throttled))  # moved by SQS's own redrive: no attributes
    dead_letter(aws, settings, "not json at all", "invalid")
    dead_letter(aws, settings, to_json({**throttled, "purchase_id": "x", "total_amount": -3}))
    inbox = subscribe_alerts(aws, settings)

    first = tick(settings, tmp_path)
    (alert,) = alerts(aws, inbox)
    assert alert["kind"] == "dlq_depth"
    assert alert["title"] == "4 purchase messages in the dead-letter queue"
    assert alert["reason"] == "2 redriven to the purchases queue, 2 quarantined"
    assert alert["details"]["redriven_by_hour"] == {HOUR.ingest_hour: 2}
    assert isinstance(first, SensorResult)
    assert first.run_requests == []  # redriven, not stored yet
    assert queue_depth(aws, settings.purchases_dlq) == 0
    redriven = receive_all(aws, settings.purchases_queue)
    assert sorted(json.loads(m["Body"])["purchase_id"] for m in redriven) == sorted(
        [throttled["purchase_id"], also_throttled["purchase_id"]]
    )
    assert {m["MessageAttributes"]["redriven_from"]["StringValue"] for m in redriven} == {settings.purchases_dlq}
    lake = Lake.open(str(tmp_path))
    (quarantine_file,) = lake.files("quarantine/dlq")
    quarantined = [json.loads(line) for line in lake.read_bytes(quarantine_file).splitlines()]
    assert sorted(q["purchase_id"] or "" for q in quarantined) == ["", "x"]
    assert "not json at all" in [q["body"] for q in quarantined]
    assert any("total_amount" in q["reason"] for q in quarantined)
    assert {q["reason"] for q in quarantined} >= {"invalid failure"}
    materialized = [e for e in first.asset_events if e.asset_key.path == ["quarantine", "dlq_purchases"]]
    assert materialized[0].metadata["dagster/row_count"].value == 2  # type: ignore[union-attr]
    pending = DlqCursor.parse(first.cursor).pending
    assert [(p.hour, len(p.ids)) for p in pending] == [(HOUR.ingest_hour, 2)]

    # the worker stores the redriven purchases (the messages became visible again for it)
    for m in redriven:
        aws.sqs.change_message_visibility(
            QueueUrl=aws.queue_url(settings.purchases_queue), ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
        )
    assert QueueRunner(settings, aws, wait_seconds=0).drain().stored == 2

    second = tick(settings, tmp_path, first.cursor)
    assert isinstance(second, SensorResult)
    (run,) = second.run_requests
    assert run.partition_key == HOUR.key
    assert run.run_key == f"dlq:{HOUR.key}:{pending[0].batch}"
    assert DlqCursor.parse(second.cursor).pending == []

    third = tick(settings, tmp_path, second.cursor)
    assert isinstance(third, SkipReason)
    assert "nothing pending" in (third.skip_message or "")


def test_a_later_batch_for_the_same_hour_gets_its_own_run(settings: Settings, aws: AwsClients, tmp_path: Path) -> None:
    keys = []
    cursor = None
    for seed in (1, 2):
        (purchase,) = stored_purchases(HOUR.start, 1, seed=seed)
        dead_letter(aws, settings, to_json(purchase), "transient")
        result = tick(settings, tmp_path, cursor)
        assert isinstance(result, SensorResult)
        QueueRunner(settings, aws, wait_seconds=0).drain()
        result = tick(settings, tmp_path, result.cursor)
        assert isinstance(result, SensorResult)
        (run,) = result.run_requests
        keys.append(run.run_key)
        cursor = result.cursor
    assert keys[0] != keys[1]
    assert all(k.startswith(f"dlq:{HOUR.key}:") for k in keys)


def test_a_purchase_dead_lettered_twice_is_waited_for_once(settings: Settings, aws: AwsClients, tmp_path: Path) -> None:
    """A message delivered twice can reach the DLQ twice (seen at volume: the worker's own forward and
    SQS's redrive); both copies are redriven, the hour waits for the purchase once and is rerun."""
    (purchase,) = stored_purchases(HOUR.start, 1, seed=5)
    dead_letter(aws, settings, to_json(purchase), "transient")
    dead_letter(aws, settings, to_json(purchase))
    first = tick(settings, tmp_path)
    assert isinstance(first, SensorResult)
    assert [p.ids for p in DlqCursor.parse(first.cursor).pending] == [[purchase["purchase_id"]]]
    assert QueueRunner(settings, aws, wait_seconds=0).drain().stored == 2  # the same purchase, stored idempotently
    second = tick(settings, tmp_path, first.cursor)
    assert isinstance(second, SensorResult)
    (run,) = second.run_requests
    assert run.partition_key == HOUR.key


def test_nothing_leaves_the_dlq_when_the_redrive_fails(settings: Settings, aws: AwsClients, tmp_path: Path) -> None:
    (purchase,) = stored_purchases(HOUR.start, 1, seed=3)
    dead_letter(aws, settings, to_json(purchase), "transient")
    broken = settings.model_copy(update={"purchases_queue": "no-such-queue"})
    with pytest.raises(ClientError):
        # the production visibility timeout: with 0, the one message came back at once and was
        # received again and again up to run's limit (500 receives, ~10 s of the suite)
        DlqTriage(broken, aws, Lake.open(str(tmp_path))).run()
    assert queue_depth(aws, settings.purchases_dlq) == 1  # still in the DLQ (in flight until its timeout)
    assert queue_depth(aws, settings.purchases_queue) == 0


def test_an_empty_dlq_is_a_skip(settings: Settings, tmp_path: Path) -> None:
    result = tick(settings, tmp_path)
    assert isinstance(result, SensorResult)  # the first tick observes the depth (0)
    assert [e.metadata["dlq_depth"].value for e in result.asset_events] == [0]  # type: ignore[union-attr]
    again = tick(settings, tmp_path, result.cursor)
    assert isinstance(again, SkipReason)
