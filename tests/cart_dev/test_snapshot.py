"""Snapshots of the local AWS (cart_dev.snapshot) against the session moto server: what a restart
must keep comes back, a message in flight is not lost, a damaged file is refused whole, and
restoring twice changes nothing."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cart_api.models import Purchase
from cart_api.settings import Settings
from cart_api.store import to_item
from cart_aws.aws import AwsClients
from cart_aws.ingest_shards import SHARD_ATTRIBUTE, count_hour, shard_key
from cart_aws.provision import provision
from cart_dev import snapshot
from cart_dev.local_aws import MotoServer
from cart_dev.seed import put_purchases, stored_purchases
from tests.conftest import receive_all

HOUR = datetime(2026, 11, 25, 9, tzinfo=UTC)
ATTRIBUTES: dict[str, Any] = {
    "failure_type": {"DataType": "String", "StringValue": "transient"},
    "receive_count": {"DataType": "Number", "StringValue": "3"},
    "raw": {"DataType": "Binary", "BinaryValue": b"\x00\xffbytes"},
}


def fill(aws: AwsClients, settings: Settings) -> None:
    put_purchases(aws, settings.purchases_table, stored_purchases(HOUR, 60, seed=3))
    aws.dynamodb.put_item(
        TableName=settings.idempotency_table,
        Item={"idempotency_key": {"S": "tests:order-1"}, "status": {"S": "done"}, "blob": {"B": b"\x01\x02"}},
    )
    queue, dlq = aws.queue_url(settings.purchases_queue), aws.queue_url(settings.purchases_dlq)
    for n in range(12):  # more than one receive batch
        aws.sqs.send_message(QueueUrl=queue, MessageBody=f'{{"n": {n}}}')
    aws.sqs.send_message(QueueUrl=dlq, MessageBody="not json", MessageAttributes=ATTRIBUTES)
    aws.s3.put_object(Bucket=settings.lake_bucket, Key="bronze/x.jsonl", Body=b'{"a": 1}\n', ContentType="text/plain")


def items(aws: AwsClients, table: str) -> list[dict[str, Any]]:
    pages = aws.dynamodb.get_paginator("scan").paginate(TableName=table)
    return sorted(
        (item for page in pages for item in page["Items"]), key=lambda i: json.dumps(i, sort_keys=True, default=repr)
    )


def waiting(aws: AwsClients, queue: str) -> list[tuple[str, dict[str, Any]]]:
    """Body and message attributes of every message in ``queue`` (received, then released again)."""
    got = receive_all(aws, queue)
    url = aws.queue_url(queue)
    for message in got:
        aws.sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
    return sorted((m["Body"], m.get("MessageAttributes", {})) for m in got)


SENT = {
    "queue": sorted((f'{{"n": {n}}}', {}) for n in range(12)),
    "dlq": [("not json", ATTRIBUTES)],
}


def state(aws: AwsClients, settings: Settings) -> dict[str, Any]:
    """Everything a snapshot keeps. Reading the queues receives each message once (and that counts
    towards the redrive policy: the fixture's queue allows 2 receives), so call this once a phase."""
    body = aws.s3.get_object(Bucket=settings.lake_bucket, Key="bronze/x.jsonl")
    return {
        "purchases": items(aws, settings.purchases_table),
        "idempotency": items(aws, settings.idempotency_table),
        "queue": waiting(aws, settings.purchases_queue),
        "dlq": waiting(aws, settings.purchases_dlq),
        "object": (body["Body"].read(), body["ContentType"]),
    }


def restart(moto_server: MotoServer, settings: Settings) -> None:
    """What a restart of the local AWS leaves: the resources provisioned again, and nothing in them."""
    moto_server.reset()
    provision(settings)


def test_a_snapshot_restored_after_a_restart_brings_back_items_messages_and_objects(
    aws: AwsClients, settings: Settings, moto_server: MotoServer, tmp_path: Path
) -> None:
    fill(aws, settings)
    path = tmp_path / snapshot.SNAPSHOT_FILE

    taken = snapshot.take(aws, snapshot.Targets.of(settings), path)

    assert taken.counts == {
        f"sqs:{settings.purchases_queue}": 12,
        f"sqs:{settings.purchases_dlq}": 1,
        f"dynamodb:{settings.purchases_table}": 60,
        f"dynamodb:{settings.idempotency_table}": 1,
        f"dynamodb:{settings.category_kpis_table}": 0,
        f"dynamodb:{settings.order_kpis_table}": 0,
        f"sqs:{settings.landing_dlq}": 0,
        f"s3:{settings.lake_bucket}": 1,
    }
    before = state(aws, settings)
    assert {"queue": before["queue"], "dlq": before["dlq"]} == SENT  # taking it left every message waiting, visible
    assert len(before["purchases"]) == 60
    assert [p.name for p in tmp_path.iterdir()] == [snapshot.SNAPSHOT_FILE]  # no temporary file left

    restart(moto_server, settings)
    assert aws.item_count(settings.purchases_table) == 0
    restored = snapshot.restore(aws, path)

    assert restored.counts == {k: n for k, n in taken.counts.items() if n}  # empty ones have nothing to restore
    assert state(aws, settings) == before


def test_a_message_in_flight_is_waited_for_and_kept_or_else_reported(
    aws: AwsClients, settings: Settings, moto_server: MotoServer, tmp_path: Path
) -> None:
    url = aws.queue_url(settings.purchases_queue)
    aws.sqs.send_message(QueueUrl=url, MessageBody='{"in": "flight"}')
    # a consumer received it and died before deleting it: invisible for 2 s
    held = aws.sqs.receive_message(QueueUrl=url, VisibilityTimeout=2, WaitTimeSeconds=0)["Messages"]
    assert len(held) == 1
    targets = snapshot.Targets.of(settings)

    hurried = snapshot.take(aws, targets, tmp_path / "hurried.jsonl.gz")
    assert hurried.in_flight == {settings.purchases_queue: 1}  # not captured, and it says so
    assert "NOT captured" in hurried.describe()

    settled = snapshot.take(aws, targets, tmp_path / snapshot.SNAPSHOT_FILE, settle_seconds=20)
    assert settled.in_flight == {}
    assert settled.counts[f"sqs:{settings.purchases_queue}"] == 1

    restart(moto_server, settings)
    snapshot.restore(aws, tmp_path / snapshot.SNAPSHOT_FILE)
    assert [body for body, _ in waiting(aws, settings.purchases_queue)] == ['{"in": "flight"}']


def test_a_torn_or_damaged_snapshot_is_refused_whole_and_restores_nothing(
    aws: AwsClients, settings: Settings, moto_server: MotoServer, tmp_path: Path
) -> None:
    fill(aws, settings)
    path = tmp_path / snapshot.SNAPSHOT_FILE
    snapshot.take(aws, snapshot.Targets.of(settings), path)
    whole = path.read_bytes()
    restart(moto_server, settings)

    path.write_bytes(whole[: len(whole) // 2])  # cut short
    with pytest.raises(snapshot.SnapshotError, match=r"incomplete or damaged.*--fresh"):
        snapshot.restore(aws, path)
    lines = gzip.decompress(whole).splitlines(keepends=True)
    path.write_bytes(gzip.compress(b"".join(lines[:-1])))  # every line but its end
    with pytest.raises(snapshot.SnapshotError, match="has no end"):
        snapshot.restore(aws, path)
    path.write_bytes(gzip.compress(b"".join([*lines[:3], *lines[4:]])))  # a line missing
    with pytest.raises(snapshot.SnapshotError, match="do not match"):
        snapshot.restore(aws, path)
    assert aws.item_count(settings.purchases_table) == 0  # nothing was restored from them
    assert waiting(aws, settings.purchases_queue) == []


def test_a_snapshot_that_fails_midway_leaves_the_previous_one_intact(
    aws: AwsClients, settings: Settings, tmp_path: Path
) -> None:
    fill(aws, settings)
    path = tmp_path / snapshot.SNAPSHOT_FILE
    snapshot.take(aws, snapshot.Targets.of(settings), path)
    previous = path.read_bytes()
    broken = snapshot.Targets(
        tables=(settings.purchases_table, "no-such-table"), queues=(), buckets=(), export_bucket=settings.lake_bucket
    )

    with pytest.raises(snapshot.SnapshotError, match=r"no-such-table|not found"):
        snapshot.take(aws, broken, path)  # fails after writing the purchases into its temporary file

    assert path.read_bytes() == previous
    assert [p.name for p in tmp_path.iterdir()] == [snapshot.SNAPSHOT_FILE]
    assert len(snapshot.read(path).items[settings.purchases_table]) == 60


def test_restoring_twice_duplicates_nothing(
    aws: AwsClients, settings: Settings, moto_server: MotoServer, tmp_path: Path
) -> None:
    fill(aws, settings)
    path = tmp_path / snapshot.SNAPSHOT_FILE
    snapshot.take(aws, snapshot.Targets.of(settings), path)
    before = {"purchases": items(aws, settings.purchases_table), "idempotency": items(aws, settings.idempotency_table)}
    restart(moto_server, settings)

    first = snapshot.restore(aws, path)
    second = snapshot.restore(aws, path)

    assert first.counts[f"sqs:{settings.purchases_queue}"] == 12
    assert second.counts[f"sqs:{settings.purchases_queue}"] == 0
    assert second.skipped == {f"sqs:{settings.purchases_queue}": 12, f"sqs:{settings.purchases_dlq}": 1}
    after = state(aws, settings)
    assert {"queue": after["queue"], "dlq": after["dlq"]} == SENT
    assert after["purchases"] == before["purchases"]
    assert after["idempotency"] == before["idempotency"]


def test_purchases_saved_before_the_index_was_sharded_are_readable_after_a_restore(
    aws: AwsClients, settings: Settings, moto_server: MotoServer, tmp_path: Path
) -> None:
    purchases = stored_purchases(HOUR, 40, seed=9)
    for purchase in purchases:  # as the worker stored them before: no ingest_shard, so in no shard of the index
        item = to_item(Purchase.model_validate(purchase).model_dump(), settings.ingest_shards)
        del item[SHARD_ATTRIBUTE]
        aws.dynamodb.put_item(TableName=settings.purchases_table, Item=item)
    hour = HOUR.strftime("%Y-%m-%dT%H")
    assert count_hour(aws, settings.purchases_table, settings.ingest_hour_index, hour) == 0
    path = tmp_path / snapshot.SNAPSHOT_FILE
    snapshot.take(aws, snapshot.Targets.of(settings), path)

    restart(moto_server, settings)
    snapshot.restore(aws, path)

    assert count_hour(aws, settings.purchases_table, settings.ingest_hour_index, hour) == 40
    stored = items(aws, settings.purchases_table)
    assert {i["purchase_id"]["S"]: i[SHARD_ATTRIBUTE]["S"] for i in stored} == {
        p["purchase_id"]: shard_key(hour, p["purchase_id"], settings.ingest_shards) for p in purchases
    }
