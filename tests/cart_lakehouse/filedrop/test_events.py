"""S3 event notifications of the landing queue: landed objects, skipped records and poison, from
bodies S3 (the moto server) sends itself and from hand-written ones."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from cart_api.settings import Settings
from cart_aws.aws import AwsClients
from cart_lakehouse.filedrop.events import (
    TEST_EVENT,
    NotAnS3Event,
    delete,
    parse_body,
    parse_messages,
    receive,
)

BUCKET = "cart-lake"


def record(key: str, name: str = "ObjectCreated:Put", bucket: str = BUCKET, **obj: object) -> dict[str, object]:
    return {
        "eventSource": "aws:s3",
        "eventTime": "2026-11-27T16:09:53.936Z",
        "eventName": name,
        "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": 12, "eTag": "abc", **obj}},
    }


def body(*records: dict[str, object]) -> str:
    return json.dumps({"Records": list(records)})


def test_events_sent_by_s3_itself(settings: Settings, aws: AwsClients) -> None:
    url = aws.queue_url(settings.landing_queue)
    key = "landing/orders/Orders 2026+11.csv"  # a space and a plus: S3 URL-encodes the key
    put = aws.s3.put_object(Bucket=settings.lake_bucket, Key=key, Body=b"order_id\n1\n")
    aws.s3.put_object(Bucket=settings.lake_bucket, Key="archive/2026-11-27/x.csv", Body=b"x")  # not delivered

    received = receive(aws.sqs, url, settings.lake_bucket)
    assert received.messages == 2  # the configuration's test event, then the one landed file
    assert received.skipped == {TEST_EVENT: 1}
    assert received.poison == []
    (landed,) = received.landed
    assert landed.key == key
    assert landed.etag == put["ETag"].strip('"')
    assert landed.size == len(b"order_id\n1\n")
    assert landed.event_name == "ObjectCreated:Put"
    assert datetime.fromisoformat(landed.event_time) <= datetime.now(UTC)
    assert landed.event_id == landed.event_time  # moto sends no sequencer
    assert len(received.receipts) == 2

    assert delete(aws.sqs, url, received.receipts) == []
    assert aws.queue_depth(settings.landing_queue) == 0


def test_records_that_are_not_a_landing_are_skipped_and_counted() -> None:
    landed, skipped = parse_body(
        body(
            record("landing/products/p.csv"),
            record("landing/products/p.csv", name="ObjectRemoved:Delete"),
            record("landing/products/p.csv", bucket="someone-else"),
            record("bronze%2Fx.json"),
            record("landing/orders/"),
        ),
        BUCKET,
    )
    assert [o.key for o in landed] == ["landing/products/p.csv"]
    assert skipped == ["ObjectRemoved:Delete", "bucket someone-else", "outside landing/", "folder marker"]


def test_s3_sequencer_tells_redeliveries_from_new_uploads() -> None:
    (with_sequencer,), _ = parse_body(body(record("landing/orders/a.csv", sequencer="0055AED6DCD90281E5")), BUCKET)
    assert with_sequencer.event_id == "0055AED6DCD90281E5"
    (without,), _ = parse_body(body(record("landing/orders/a.csv")), BUCKET)  # moto sends none
    assert without.event_id == "2026-11-27T16:09:53.936Z"


def test_an_s3_event_forwarded_through_sns_is_unwrapped() -> None:
    envelope = json.dumps({"Type": "Notification", "Message": body(record("landing%2Forders%2Fa+b.csv"))})
    (landed,), _ = parse_body(envelope, BUCKET)
    assert landed.key == "landing/orders/a b.csv"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("not json at all", "not JSON"),
        ('["a", "list"]', "JSON list"),
        ('{"order_id": "1"}', "JSON without Records (keys: order_id)"),
        ('{"Records": [{"eventName": "ObjectCreated:Put"}]}', "a record without 's3'"),
    ],
)
def test_a_body_that_is_not_an_s3_event_is_poison(text: str, reason: str) -> None:
    with pytest.raises(NotAnS3Event, match=reason.replace("(", r"\(").replace(")", r"\)")):
        parse_body(text, BUCKET)
    received = parse_messages(
        [
            {"MessageId": "m1", "ReceiptHandle": "r1", "Body": text, "Attributes": {"ApproximateReceiveCount": "2"}},
            {"MessageId": "m2", "ReceiptHandle": "r2", "Body": body(record("landing/orders/a.csv"))},
        ],
        BUCKET,
    )
    (poison,) = received.poison
    assert (poison.message_id, poison.receive_count) == ("m1", 2)
    assert reason.split(" (")[0] in poison.reason
    assert received.receipts == ["r2"]  # the poison is not deleted: its redrive policy takes it to the DLQ
    assert "1 not S3 events (left for the queue's redrive to its DLQ)" in received.summary()
