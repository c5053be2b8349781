"""The patched moto server (cart_dev.moto_server) against stock moto, both started by MotoServer and
used through boto3 over HTTP: every patch applies to the locked moto, a patch that no longer fits
is left out with a warning, and what the patches touch answers as stock moto answers (the item
size limit, queue counts, FIFO deduplication, Query pages across writes of every kind), a Query
hands moto only its key's items, and moto's redrive moves a message to the DLQ once under
concurrent receivers."""

from __future__ import annotations

import json
import logging
import random
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
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table

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


# ---- the server: each request's service ----


def test_moto_s_services_are_listed_once_and_as_moto_lists_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server asks this list which service a request is for, twice a request: the same names in
    the same order as moto's own listing of its package folder, which is read once."""
    own = moto_server._original(moto_server.SERVER, "backends", "list_of_moto_modules")
    listings: list[int] = []

    def counted() -> Any:
        listings.append(1)
        return own()

    monkeypatch.setattr(moto_server, "_moto_modules", None)
    monkeypatch.setitem(moto_server._ORIGINALS, (moto_server.SERVER, "backends", "list_of_moto_modules"), counted)
    first, again = list(moto_server._list_of_moto_modules()), list(moto_server._list_of_moto_modules())
    assert first == again == list(own())
    assert {"sqs", "sns", "dynamodb", "s3", "glue", "cloudwatch", "sts"} <= set(first)
    assert "sqs.us-east-1.amazonaws.com" not in moto_server._list_of_moto_modules()
    assert listings == [1]


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


# ---- DynamoDB: Query reads one partition ----

SHARDS = [f"h#{n}" for n in range(4)]
EVENTS: dict[str, Any] = {
    "TableName": "events",
    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
    "AttributeDefinitions": [
        {"AttributeName": "pk", "AttributeType": "S"},
        {"AttributeName": "part_key", "AttributeType": "S"},
        {"AttributeName": "at", "AttributeType": "S"},
    ],
    "GlobalSecondaryIndexes": [
        {
            "IndexName": "by-shard",
            "KeySchema": [
                {"AttributeName": "part_key", "KeyType": "HASH"},
                {"AttributeName": "at", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "ALL"},
        },
        {
            "IndexName": "shard-only",
            "KeySchema": [{"AttributeName": "part_key", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
        },
    ],
    "BillingMode": "PAY_PER_REQUEST",
}
LEDGER: dict[str, Any] = {
    "TableName": "ledger",
    "KeySchema": [{"AttributeName": "account", "KeyType": "HASH"}, {"AttributeName": "seq", "KeyType": "RANGE"}],
    "AttributeDefinitions": [
        {"AttributeName": "account", "AttributeType": "S"},
        {"AttributeName": "seq", "AttributeType": "N"},
        {"AttributeName": "amount", "AttributeType": "N"},
    ],
    "LocalSecondaryIndexes": [
        {
            "IndexName": "by-amount",
            "KeySchema": [
                {"AttributeName": "account", "KeyType": "HASH"},
                {"AttributeName": "amount", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "ALL"},
        }
    ],
    "BillingMode": "PAY_PER_REQUEST",
}


def S(value: str) -> dict[str, str]:
    return {"S": value}


def N(value: int) -> dict[str, str]:
    return {"N": str(value)}


def event(rng: random.Random, n: int) -> dict[str, Any]:
    item: dict[str, Any] = {"pk": S(f"e{n:04d}"), "amount": N(rng.randrange(100)), "pad": S("x" * 40)}
    if rng.random() < 0.9:  # some items lack the index key, or its range key: not in by-shard
        item["part_key"] = S(rng.choice(SHARDS))
    if rng.random() < 0.9:
        item["at"] = S(f"2026-11-25T09:{rng.randrange(30):02d}")  # repeats: ties ordered by the table key
    return item


def ledger_entry(rng: random.Random, n: int) -> dict[str, Any]:
    return {"account": S(f"a{rng.randrange(3)}"), "seq": N(n), "amount": N(rng.randrange(50))}


def on_shard(shard: str, **more: Any) -> dict[str, Any]:
    values = {":s": S(shard), **more.pop("ExpressionAttributeValues", {})}
    return {
        "TableName": "events",
        "IndexName": "by-shard",
        "KeyConditionExpression": "part_key = :s",
        "ExpressionAttributeValues": values,
        **more,
    }


OWN_KEY = {"TableName": "events", "KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": S("e0003")}}
QUERIES: list[dict[str, Any]] = [
    *(on_shard(shard) for shard in [*SHARDS, "h#none"]),
    on_shard("h#1", Limit=7),
    on_shard("h#2", Limit=5, ScanIndexForward=False),
    on_shard("h#0", Select="COUNT"),
    on_shard("h#0", Select="COUNT", Limit=10),
    on_shard(
        "h#3",
        KeyConditionExpression="part_key = :s AND #at BETWEEN :lo AND :hi",
        ExpressionAttributeNames={"#at": "at"},
        ExpressionAttributeValues={":lo": S("2026-11-25T09:05"), ":hi": S("2026-11-25T09:20")},
        Limit=4,
    ),
    on_shard("h#1", FilterExpression="amount > :a", ExpressionAttributeValues={":a": N(50)}, Limit=6),
    on_shard("h#0", ProjectionExpression="pk, amount", Limit=9, ScanIndexForward=False),
    {**on_shard("h#2", Limit=8), "IndexName": "shard-only"},
    OWN_KEY,
    {"TableName": "events", "KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": S("e9999")}},
    {
        "TableName": "ledger",
        "KeyConditionExpression": "account = :a",
        "ExpressionAttributeValues": {":a": S("a1")},
        "Limit": 6,
    },
    {
        "TableName": "ledger",
        "KeyConditionExpression": "account = :a AND seq >= :q",
        "ExpressionAttributeValues": {":a": S("a0"), ":q": N(20)},
        "Limit": 5,
        "ScanIndexForward": False,
    },
    {
        "TableName": "ledger",
        "IndexName": "by-amount",
        "KeyConditionExpression": "account = :a AND amount < :m",
        "ExpressionAttributeValues": {":a": S("a2"), ":m": N(25)},
        "Limit": 4,
    },
]


def every_page(ddb: Any, query: dict[str, Any]) -> list[dict[str, Any]]:
    """Every page of ``query`` (ExclusiveStartKey from each LastEvaluatedKey), as the server answered."""
    request = dict(query)
    pages = []
    while len(pages) < 200:
        answer = ddb.query(**request)
        answer.pop("ResponseMetadata")
        pages.append(answer)
        if "LastEvaluatedKey" not in answer:
            break
        request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
    return pages


def every_answer(ddb: Any, table: str | None = None) -> list[list[dict[str, Any]]]:
    return [every_page(ddb, query) for query in QUERIES if table in (None, query["TableName"])]


def write_and_query(ddb: Any) -> list[Any]:
    """Writes of every kind, with every query (all its pages) between them; what the queries answered."""
    ddb.create_table(**EVENTS)
    ddb.create_table(**LEDGER)
    rng = random.Random(7)
    answers = [every_answer(ddb)]  # empty tables
    for n in range(120):
        ddb.put_item(TableName="events", Item=event(rng, n))
        ddb.put_item(TableName="ledger", Item=ledger_entry(rng, n))
    answers.append(every_answer(ddb))  # the patched server builds its map here

    with pytest.raises(ClientError, match="ConditionalCheckFailed"):  # refused: the item stays
        ddb.update_item(
            TableName="events",
            Key={"pk": S("e0005")},
            UpdateExpression="SET part_key = :s",
            ConditionExpression="amount > :big",
            ExpressionAttributeValues={":s": S("h#3"), ":big": N(1000)},
        )
    answers.append(every_answer(ddb))
    for n in range(1, 4):  # each to the next shard
        pk = {"pk": S(f"e{n:04d}")}
        now = ddb.get_item(TableName="events", Key=pk)["Item"].get("part_key", S("h#3"))["S"]
        ddb.update_item(
            TableName="events",
            Key=pk,
            UpdateExpression="SET part_key = :s, amount = :a",
            ExpressionAttributeValues={":s": S(SHARDS[(SHARDS.index(now) + 1) % 4]), ":a": N(99)},
        )
    ddb.update_item(TableName="events", Key={"pk": S("e0004")}, UpdateExpression="REMOVE part_key")
    ddb.update_item(  # creates the item
        TableName="events",
        Key={"pk": S("e0500")},
        UpdateExpression="SET part_key = :s, #at = :t",
        ExpressionAttributeNames={"#at": "at"},
        ExpressionAttributeValues={":s": S("h#0"), ":t": S("2026-11-25T09:15")},
    )
    ddb.delete_item(TableName="events", Key={"pk": S("e0006")})
    ddb.put_item(TableName="events", Item={**event(rng, 7), "part_key": S("h#3")})  # overwritten
    ddb.delete_item(TableName="ledger", Key={"account": S("a1"), "seq": N(3)})
    answers.append(every_answer(ddb))

    ddb.batch_write_item(
        RequestItems={
            "events": [
                *({"PutRequest": {"Item": event(rng, n)}} for n in range(8, 20)),
                *({"DeleteRequest": {"Key": {"pk": S(f"e{n:04d}")}}} for n in range(20, 30)),
            ]
        }
    )
    ddb.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": "events", "Item": {**event(rng, 30), "part_key": S("h#1")}}},
            {
                "Update": {
                    "TableName": "events",
                    "Key": {"pk": S("e0031")},
                    "UpdateExpression": "SET part_key = :s",
                    "ExpressionAttributeValues": {":s": S("h#0")},
                }
            },
            {"Delete": {"TableName": "events", "Key": {"pk": S("e0032")}}},
        ]
    )
    with pytest.raises(ClientError, match="TransactionCanceled"):  # moto puts the table back as it was
        ddb.transact_write_items(
            TransactItems=[
                {"Delete": {"TableName": "events", "Key": {"pk": S("e0033")}}},
                {
                    "ConditionCheck": {
                        "TableName": "events",
                        "Key": {"pk": S("e0034")},
                        "ConditionExpression": "amount > :big",
                        "ExpressionAttributeValues": {":big": N(1000)},
                    }
                },
            ]
        )
    answers.append(every_answer(ddb))

    ddb.delete_table(TableName="events")  # a new table of the same name starts empty
    ddb.create_table(**EVENTS)
    ddb.put_item(TableName="events", Item={"pk": S("e0001"), "part_key": S("h#1"), "at": S("t")})
    answers.append(every_answer(ddb, "events"))
    return answers


def test_queries_answer_as_stock_moto_across_writes(both: dict[str, Server]) -> None:
    """The same writes on both servers, and every query (each of its pages) between them: the same
    answers, before and after updates that move an item to another index key or out of the index,
    deletes, overwrites, batch and transactional writes, a cancelled transaction, a table recreated."""
    answers = {name: write_and_query(server.client("dynamodb")) for name, server in both.items()}
    assert answers["patched"] == answers["stock"]
    full = answers["patched"][1]
    assert all(len(pages) == 1 for pages in full[:5])  # one page per shard, unlimited
    assert sum(page["Count"] for pages in full[:4] for page in pages) > 90  # most items are in the index
    assert len(full[5]) > 3  # Limit=7 took several pages
    assert full[QUERIES.index(OWN_KEY)][0]["Count"] == 1


class Unlisted(Table):
    """A moto table whose Query may not list every item (what stock moto does on each page)."""

    def all_items(self) -> list[Any]:
        raise AssertionError("the Query walked the whole table")


def test_a_query_hands_moto_only_the_items_of_its_key() -> None:
    """In this process, with moto's own objects (nothing patched here): the patch's functions, called
    as the patched server calls them, answer a Query of an index key, or of the table's own key,
    without listing the table, and the patch's map holds each key's items and no other, across
    writes, an update that moves an item to another key and one that takes it out, and a delete."""
    backend = DynamoDBBackend("us-east-1", "123456789012")
    table = backend.tables["events"] = Unlisted(
        "events",
        account_id="123456789012",
        region="us-east-1",
        schema=EVENTS["KeySchema"],
        attr=EVENTS["AttributeDefinitions"],
        global_indexes=EVENTS["GlobalSecondaryIndexes"],
    )
    rng = random.Random(3)
    items = [event(rng, n) for n in range(300)]
    for item in items[:200]:
        moto_server._table_put_item(table, item)

    def query(value: str, index: str | None = "by-shard") -> list[str]:
        key = DynamoType(S(value))
        condition = [("part_key" if index else "pk", key)]
        found, _, _ = moto_server._table_query(
            table, key, None, [], None, None, True, None, index, False, None, condition
        )
        return [item.attrs["pk"].value for item in found]

    def expected(value: str) -> list[str]:
        """Items of the shard that carry the index's range key, in the index's order."""
        stored = [i for i in items if i["pk"]["S"] in present and i.get("part_key") == S(value) and "at" in i]
        return [i["pk"]["S"] for i in sorted(stored, key=lambda i: (i["at"]["S"], i["pk"]["S"]))]

    def indexed() -> dict[str, list[str]]:
        held = moto_server.indexed_keys(table, "part_key")
        assert held is not None
        return {value.value: sorted(key[0].value for key in keys) for value, keys in held.items()}

    def stored_on(value: str) -> list[str]:
        return sorted(i["pk"]["S"] for i in items if i["pk"]["S"] in present and i.get("part_key") == S(value))

    present = {i["pk"]["S"] for i in items[:200]}
    assert moto_server.indexed_keys(table, "part_key") is None  # built by the first Query
    assert query("h#1") == expected("h#1")
    assert indexed() == {shard: stored_on(shard) for shard in SHARDS}

    for item in items[200:]:  # written after the map was built
        moto_server._table_put_item(table, item)
    present |= {i["pk"]["S"] for i in items[200:]}
    moved, out = items[0], items[1]
    target = next(shard for shard in SHARDS if S(shard) != moved.get("part_key"))
    values = {":s": S(target)}
    moto_server._backend_update_item(backend, "events", {"pk": moved["pk"]}, "SET part_key = :s", {}, values)
    moved["part_key"] = S(target)
    moto_server._backend_update_item(backend, "events", {"pk": out["pk"]}, "REMOVE part_key", {}, {})
    del out["part_key"]
    gone = items[2]
    moto_server._table_delete_item(table, DynamoType(gone["pk"]), None)
    present.discard(gone["pk"]["S"])

    assert indexed() == {shard: stored_on(shard) for shard in SHARDS}
    for shard in SHARDS:
        assert query(shard) == expected(shard)
    assert query("e0005", index=None) == ["e0005"]  # the table's own key: moto's dict of partitions
    assert query("e0002", index=None) == []
