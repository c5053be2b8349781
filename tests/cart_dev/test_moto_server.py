"""The patched moto server (cart_dev.moto_server) against stock moto, both started by MotoServer and
used through boto3 over HTTP: every patch applies to the locked moto, a patch that no longer fits
is left out with a warning, and what the patches touch answers as stock moto answers (the item
size limit, queue counts, FIFO deduplication), and moto's redrive moves a message to the DLQ once
under concurrent receivers."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from cart_dev import moto_server
from cart_dev.local_aws import MotoServer

pytestmark = pytest.mark.integration

# no retries: a 500 must reach the test instead of being retried away
NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"}, max_pool_connections=16)


@dataclass
class Server:
    server: MotoServer
    log: Path

    def client(self, service: str) -> Any:
        return boto3.client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.server.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=NO_RETRIES,
        )


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    """A stock and a patched moto server side by side, each logging to a file."""
    logs = tmp_path_factory.mktemp("moto-logs")
    started: dict[str, Server] = {}
    try:
        for name, stock in (("stock", True), ("patched", False)):
            log = logs / f"{name}.log"
            started[name] = Server(MotoServer(log_path=log, stock=stock).start(), log)
        yield started
    finally:
        for server in started.values():
            server.server.stop()


@pytest.fixture
def both(servers: dict[str, Server]) -> dict[str, Server]:
    for server in servers.values():
        server.server.reset()
    return servers


# ---- the patches apply ----


def test_every_patch_applies_to_the_locked_moto(servers: dict[str, Server]) -> None:
    """A moto upgrade that changes what a patch replaces fails here, not silently at volume."""
    assert moto_server.problems() == {}
    names = [patch.name for patch in moto_server.PATCHES]
    log = servers["patched"].log.read_text()
    assert f"{moto_server.APPLIED_LINE} {', '.join(names)}\n" in log
    assert "NOT applied" not in log
    assert moto_server.APPLIED_LINE not in servers["stock"].log.read_text()


def test_a_patch_that_no_longer_fits_moto_is_left_out_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    def replacement(self: Any, queue_name: str) -> None:
        raise AssertionError("must not be installed")

    changed = moto_server.Patch(
        "changed-source",
        "why it exists",
        (moto_server.Target("moto.sqs.models", "SQSBackend", "purge_queue", "0" * 16, replacement),),
    )
    missing = moto_server.Patch(
        "missing-function",
        "why it exists",
        (moto_server.Target("moto.sqs.models", "SQSBackend", "no_such_method", "0" * 16, replacement),),
    )
    other_signature = moto_server.Patch(
        "other-signature",
        "why it exists",
        (moto_server.Target("moto.sqs.models", "SQSBackend", "delete_queue", "0" * 16, lambda self: None),),
    )
    from moto.sqs.models import SQSBackend

    before = SQSBackend.purge_queue
    with caplog.at_level(logging.WARNING, logger="cart_dev.moto_server"):
        applied = moto_server.apply_patches([changed, missing, other_signature])

    assert applied == []
    assert SQSBackend.purge_queue is before  # moto's own code runs
    warnings = caplog.text
    assert "patch changed-source NOT applied" in warnings
    assert "SQSBackend.purge_queue has other source" in warnings
    assert "SQSBackend.no_such_method is missing" in warnings
    assert "SQSBackend.delete_queue has another signature" in warnings


# ---- DynamoDB: the item size limit ----


def put_outcome(call: Callable[..., Any], **request: Any) -> str:
    try:
        call(**request)
    except ClientError as exc:
        return f"{exc.response['Error']['Code']}: {exc.response['Error']['Message']}"
    return "stored"


def item_of_size(size: int, attributes: int) -> dict[str, Any]:
    """An item of ``size`` bytes by DynamoDB's rule (names plus values), over ``attributes`` attributes."""
    item: dict[str, Any] = {"pk": {"S": "k"}}  # 2 + 1 bytes
    left = size - 3
    for n in range(attributes):
        name = f"a{n:04d}"
        value = left // (attributes - n) - len(name)
        item[name] = {"S": "x" * value}
        left -= len(name) + value
    return item


@pytest.mark.parametrize("attributes", [1, 50])
def test_the_item_size_limit_refuses_what_stock_moto_refuses(both: dict[str, Server], attributes: int) -> None:
    outcomes: dict[str, list[str]] = {}
    for name, server in both.items():
        ddb = server.client("dynamodb")
        ddb.create_table(
            TableName="sizes",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        outcomes[name] = [
            put_outcome(ddb.put_item, TableName="sizes", Item=item_of_size(size, attributes))
            for size in (405_000, 405_001, 600_000)
        ]
        oversize = {"sizes": [{"PutRequest": {"Item": item_of_size(405_001, attributes)}}]}
        outcomes[name].append(put_outcome(ddb.batch_write_item, RequestItems=oversize))
    assert outcomes["patched"] == outcomes["stock"]
    refused = "ValidationException: Item size has exceeded the maximum allowed size"
    assert outcomes["patched"] == ["stored", refused, refused, refused]


def test_stored_items_read_back_as_written(both: dict[str, Server]) -> None:
    item = {
        "pk": {"S": "p-1"},
        "n": {"N": "129.90"},
        "b": {"B": b"\x00\xff"},
        "flag": {"BOOL": True},
        "nothing": {"NULL": True},
        "tags": {"SS": ["a", "b"]},
        "nested": {"M": {"list": {"L": [{"S": "x"}, {"N": "1"}]}}},
    }
    for server in both.values():
        ddb = server.client("dynamodb")
        ddb.create_table(
            TableName="items",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        ddb.put_item(TableName="items", Item=item)
    got = {
        name: s.client("dynamodb").get_item(TableName="items", Key={"pk": {"S": "p-1"}})["Item"]
        for name, s in both.items()
    }
    assert got["patched"] == got["stock"]
    assert got["patched"]["nested"] == item["nested"]


# ---- SQS: counts, attributes, FIFO deduplication ----

COUNTS = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"]


def test_queue_counts_with_messages_visible_in_flight_and_delayed(both: dict[str, Server]) -> None:
    answers: dict[str, list[Any]] = {}
    for name, server in both.items():
        sqs = server.client("sqs")
        url = sqs.create_queue(QueueName="counts")["QueueUrl"]
        for n in range(5):
            sqs.send_message(QueueUrl=url, MessageBody=f"visible {n}")
        for n in range(3):
            sqs.send_message(QueueUrl=url, MessageBody=f"delayed {n}", DelaySeconds=600)
        received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=2, VisibilityTimeout=600)["Messages"]
        assert len(received) == 2
        every = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        answers[name] = [
            {k: every[k] for k in COUNTS},
            sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[*COUNTS, COUNTS[0], "VisibilityTimeout"])[
                "Attributes"
            ],
            sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["KmsMasterKeyId"]).get("Attributes", {}),
            sorted(every),  # the same names (the values of some are timestamps)
        ]
    assert answers["patched"] == answers["stock"]
    assert answers["patched"][0] == {
        "ApproximateNumberOfMessages": "3",
        "ApproximateNumberOfMessagesNotVisible": "2",
        "ApproximateNumberOfMessagesDelayed": "3",
    }
    assert answers["patched"][1] == {**answers["patched"][0], "VisibilityTimeout": "30"}


def test_an_unknown_attribute_name_is_refused_as_stock_moto_refuses_it(both: dict[str, Server]) -> None:
    errors = {}
    for name, server in both.items():
        sqs = server.client("sqs")
        url = sqs.create_queue(QueueName="names")["QueueUrl"]
        with pytest.raises(ClientError) as refused:
            sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["NoSuchAttribute"])
        errors[name] = refused.value.response["Error"]
    assert errors["patched"] == errors["stock"]


def test_fifo_content_based_deduplication_and_its_errors_as_stock(both: dict[str, Server]) -> None:
    seen: dict[str, list[Any]] = {}
    for name, server in both.items():
        sqs = server.client("sqs")
        dedup = sqs.create_queue(
            QueueName="dedup.fifo", Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"}
        )["QueueUrl"]
        plain = sqs.create_queue(QueueName="plain.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
        for _ in range(2):
            sqs.send_message(QueueUrl=dedup, MessageBody="same body", MessageGroupId="g")
        sqs.send_message(QueueUrl=dedup, MessageBody="other body", MessageGroupId="g")
        with pytest.raises(ClientError) as refused:
            sqs.send_message(QueueUrl=plain, MessageBody="no deduplication id", MessageGroupId="g")
        depth = sqs.get_queue_attributes(QueueUrl=dedup, AttributeNames=["ApproximateNumberOfMessages"])
        seen[name] = [depth["Attributes"], refused.value.response["Error"]]
    assert seen["patched"] == seen["stock"]
    assert seen["patched"][0] == {"ApproximateNumberOfMessages": "2"}


# ---- SQS: redrive to the DLQ under concurrent receivers ----


def test_a_message_at_its_max_receive_count_goes_to_the_dlq_once_under_concurrent_receivers(
    both: dict[str, Server],
) -> None:
    server = both["patched"]
    sqs = server.client("sqs")
    dlq = sqs.create_queue(QueueName="redrive-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 1})
    url = sqs.create_queue(QueueName="redrive", Attributes={"RedrivePolicy": policy})["QueueUrl"]
    count = 200
    for start in range(0, count, 10):
        sqs.send_message_batch(
            QueueUrl=url, Entries=[{"Id": str(n), "MessageBody": f"message {start + n}"} for n in range(10)]
        )

    # each message received once (its maxReceiveCount), then made visible again
    first: dict[str, str] = {}
    while len(first) < count:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=600).get("Messages", [])
        assert got, f"only {len(first)} of {count} messages received"
        first.update((m["MessageId"], m["ReceiptHandle"]) for m in got)
    handles = list(first.values())
    for start in range(0, count, 10):
        entries = [
            {"Id": str(n), "ReceiptHandle": handle, "VisibilityTimeout": 0}
            for n, handle in enumerate(handles[start : start + 10])
        ]
        assert not sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries).get("Failed")

    def depth(queue: str, name: str) -> int:
        return int(sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=[name])["Attributes"][name])

    assert depth(url, "ApproximateNumberOfMessages") == count

    # now every receive finds all of them due for the DLQ: concurrent receivers race to move them
    receivers = 8
    ready = threading.Barrier(receivers)
    clients = [server.client("sqs") for _ in range(receivers)]

    def receive(client: Any) -> list[str]:
        ready.wait()
        got: list[str] = []
        for _ in range(3):
            answer = client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            got.extend(m["MessageId"] for m in answer.get("Messages", []))
        return got

    with ThreadPoolExecutor(max_workers=receivers) as pool:
        received = [m for got in pool.map(receive, clients) for m in got]  # re-raises a 500

    assert received == []  # none was handed out past its maxReceiveCount
    moved: list[str] = []
    while True:
        got = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, VisibilityTimeout=600).get("Messages", [])
        if not got:
            break
        moved.extend(m["MessageId"] for m in got)
    assert sorted(moved) == sorted(first)  # every one, once
    assert depth(url, "ApproximateNumberOfMessages") == 0
    assert depth(url, "ApproximateNumberOfMessagesNotVisible") == 0


# ---- SQS: a delete racing a send ----


def sends_racing_deletes(server: Server, queue_name: str, count: int = 400, filler: int = 3000) -> set[str]:
    """Receive ``count`` messages, then delete them while four threads send ``count`` new ones, with
    ``filler`` messages delayed in the queue (each delete rebuilds the whole list: a wider window);
    the new messages left in the queue."""
    sqs = server.client("sqs")
    url = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
    for _ in range(0, count, 10):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(n), "MessageBody": "old"} for n in range(10)])
    handles: list[str] = []
    while len(handles) < count:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=600).get("Messages", [])
        handles.extend(m["ReceiptHandle"] for m in got)
    for _ in range(0, filler, 10):
        entries = [{"Id": str(n), "MessageBody": "filler", "DelaySeconds": 900} for n in range(10)]
        sqs.send_message_batch(QueueUrl=url, Entries=entries)
    senders, ready = 4, threading.Barrier(5)

    def delete_all() -> None:
        client = server.client("sqs")
        ready.wait()
        for handle in handles:
            client.delete_message(QueueUrl=url, ReceiptHandle=handle)

    def send(part: int) -> None:
        client = server.client("sqs")
        ready.wait()
        for n in range(part, count, senders):
            client.send_message(QueueUrl=url, MessageBody=f"new {n}")

    with ThreadPoolExecutor(max_workers=senders + 1) as pool:
        for done in [pool.submit(delete_all), *(pool.submit(send, p) for p in range(senders))]:
            done.result()
    left: set[str] = set()
    while got := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=600).get("Messages"):
        left.update(m["Body"] for m in got)
    return left - {"filler"}


def test_a_message_sent_while_others_are_deleted_is_kept(both: dict[str, Server]) -> None:
    """Stock moto rebuilds the queue's list on delete without the lock sends append under, and drops
    what was sent meanwhile (cart-demo lost 10 of 9007 purchases so); the patched server keeps all."""
    assert sends_racing_deletes(both["patched"], "race") == {f"new {n}" for n in range(400)}
