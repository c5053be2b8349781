"""Checkpoints of the project's moto server (cart_dev.moto_checkpoint), through MotoServer over HTTP:
a restored server holds what provisioning built and nothing else, whatever happened since; it works
as a freshly provisioned one across services (SNS to SQS, S3 events to SQS, the redrive to a DLQ, a
Query of an index); a checkpoint can be restored any number of times; an unknown one changes nothing."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from urllib.parse import unquote_plus

import pytest

from cart_api.settings import Settings
from cart_aws.aws import AwsClients
from cart_aws.provision import provision
from cart_dev.local_aws import MotoServer
from cart_dev.moto_checkpoint import CHECKPOINT_PATH, RESTORE_PATH
from tests.conftest import receive_all

NAME = "test-moto-checkpoint"


@pytest.fixture
def provisioned(moto_server: MotoServer) -> Iterator[tuple[MotoServer, Settings, AwsClients]]:
    """The session's server freshly provisioned (no checkpoint involved) and kept as ``NAME``."""
    moto_server.reset()
    settings = Settings(aws_endpoint_url=moto_server.endpoint_url, max_receive_count=2, visibility_timeout=30)
    provision(settings)
    moto_server.checkpoint(NAME)
    yield moto_server, settings, AwsClients(settings)
    moto_server.reset()  # the next test's settings fixture restores its own checkpoint anyway


def everything(aws: AwsClients, settings: Settings) -> dict[str, object]:
    """What a test could see of the stack: resources with their settings, and their contents."""
    queues = sorted(url.rsplit("/", 1)[1] for url in aws.sqs.list_queues().get("QueueUrls", []))
    return {
        "topics": sorted(t["TopicArn"] for t in aws.sns.list_topics()["Topics"]),
        "subscriptions": sorted(
            (s["TopicArn"], s["Protocol"], s["Endpoint"]) for s in aws.sns.list_subscriptions()["Subscriptions"]
        ),
        "queues": {
            q: aws.sqs.get_queue_attributes(
                QueueUrl=aws.queue_url(q),
                AttributeNames=["RedrivePolicy", "Policy", "VisibilityTimeout", "ApproximateNumberOfMessages"],
            )["Attributes"]
            for q in queues
        },
        "tables": {
            t: {
                k: v
                for k, v in aws.dynamodb.describe_table(TableName=t)["Table"].items()
                if k
                in ("KeySchema", "AttributeDefinitions", "GlobalSecondaryIndexes", "ItemCount", "BillingModeSummary")
            }
            for t in aws.dynamodb.list_tables()["TableNames"]
        },
        "items": {t: aws.item_count(t) for t in aws.dynamodb.list_tables()["TableNames"]},
        "buckets": sorted(b["Name"] for b in aws.s3.list_buckets()["Buckets"]),
        "objects": aws.s3.list_objects_v2(Bucket=settings.lake_bucket).get("KeyCount"),
        "notifications": aws.s3.get_bucket_notification_configuration(Bucket=settings.lake_bucket).get(
            "QueueConfigurations"
        ),
        "glue": sorted(d["Name"] for d in aws.glue.get_databases()["DatabaseList"]),
        "alarms": sorted(a["AlarmName"] for a in aws.cloudwatch.describe_alarms()["MetricAlarms"]),
    }


def test_a_restored_server_holds_the_provisioned_stack_and_nothing_else(
    provisioned: tuple[MotoServer, Settings, AwsClients],
) -> None:
    server, settings, aws = provisioned
    fresh = everything(aws, settings)
    assert fresh["queues"]  # the comparison below compares something
    assert fresh["tables"]
    assert fresh["alarms"]

    # every kind of change a test makes: contents, new resources, deleted and changed ones
    aws.sns.publish(TopicArn=aws.topic_arn(settings.purchases_topic), Message="{}")
    aws.dynamodb.put_item(TableName=settings.idempotency_table, Item={"idempotency_key": {"S": "k"}})
    aws.s3.put_object(Bucket=settings.lake_bucket, Key="bronze/x.jsonl", Body=b"{}\n")
    aws.sqs.create_queue(QueueName="made-by-a-test")
    aws.sns.create_topic(Name="made-by-a-test")
    aws.dynamodb.delete_table(TableName=settings.purchases_table)
    aws.sqs.set_queue_attributes(
        QueueUrl=aws.queue_url(settings.purchases_queue), Attributes={"VisibilityTimeout": "1"}
    )
    aws.cloudwatch.delete_alarms(AlarmNames=[a["AlarmName"] for a in aws.cloudwatch.describe_alarms()["MetricAlarms"]])
    assert everything(aws, settings) != fresh

    assert server.restore(NAME)

    assert everything(aws, settings) == fresh
    assert {c.action for c in provision(settings)} == {"unchanged"}  # every resource as described


def test_a_checkpoint_restores_any_number_of_times(provisioned: tuple[MotoServer, Settings, AwsClients]) -> None:
    server, settings, aws = provisioned
    fresh = everything(aws, settings)
    for round_ in range(3):
        assert server.restore(NAME)
        assert everything(aws, settings) == fresh  # nothing of the previous round is left
        aws.s3.put_object(Bucket=settings.lake_bucket, Key=f"bronze/{round_}.jsonl", Body=b"{}\n")
        aws.sqs.send_message(QueueUrl=aws.queue_url(settings.purchases_queue), MessageBody=str(round_))


def test_a_restored_stack_works_across_services(provisioned: tuple[MotoServer, Settings, AwsClients]) -> None:
    server, settings, aws = provisioned
    assert server.restore(NAME)

    # SNS delivers to the subscribed queue (a topic refers to its backend, the queue to its lock)
    aws.sns.publish(TopicArn=aws.topic_arn(settings.purchases_topic), Message='{"n": 1}')
    (message,) = receive_all(aws, settings.purchases_queue)
    assert message["Body"] == '{"n": 1}'
    # moto's redrive moves it to the DLQ after max_receive_count receives (the queue refers to its DLQ)
    queue_url, handle = aws.queue_url(settings.purchases_queue), message["ReceiptHandle"]
    for _ in range(settings.max_receive_count - 1):
        aws.sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=handle, VisibilityTimeout=0)
        (again,) = receive_all(aws, settings.purchases_queue)
        handle = again["ReceiptHandle"]
    aws.sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=handle, VisibilityTimeout=0)
    assert receive_all(aws, settings.purchases_queue) == []
    assert [m["Body"] for m in receive_all(aws, settings.purchases_dlq)] == ['{"n": 1}']
    # S3 tells the landing queue about a landed file
    aws.s3.put_object(Bucket=settings.lake_bucket, Key="landing/orders/a.csv", Body=b"x\n")
    events = [json.loads(m["Body"]) for m in receive_all(aws, settings.landing_queue)]
    keys = [unquote_plus(r["s3"]["object"]["key"]) for e in events for r in e.get("Records", [])]  # URL-encoded
    assert keys == ["landing/orders/a.csv"]
    # a Query of the purchases' index finds what was put (the server's index maps start empty)
    item = {
        "purchase_id": {"S": "p1"},
        "ingest_shard": {"S": "2026-11-25T03#00"},
        "received_at": {"S": "2026-11-25T03:10:00.000000Z"},
    }
    aws.dynamodb.put_item(TableName=settings.purchases_table, Item=item)
    found = aws.dynamodb.query(
        TableName=settings.purchases_table,
        IndexName=settings.ingest_hour_index,
        KeyConditionExpression="ingest_shard = :s",
        ExpressionAttributeValues={":s": {"S": "2026-11-25T03#00"}},
    )["Items"]
    assert [i["purchase_id"]["S"] for i in found] == ["p1"]


def test_an_unknown_checkpoint_changes_nothing(provisioned: tuple[MotoServer, Settings, AwsClients]) -> None:
    server, _, aws = provisioned
    aws.sqs.create_queue(QueueName="made-by-a-test")
    assert not server.restore("no-such-checkpoint")
    assert "made-by-a-test" in [u.rsplit("/", 1)[1] for u in aws.sqs.list_queues()["QueueUrls"]]


def test_stock_moto_has_no_checkpoints() -> None:
    stock = MotoServer(stock=True)  # not started: neither call reaches a server
    assert not stock.restore(NAME)
    with pytest.raises(RuntimeError, match=r"cart_dev\.moto_server"):
        stock.checkpoint(NAME)


def test_a_checkpoint_needs_a_name(moto_server: MotoServer) -> None:
    for path in (CHECKPOINT_PATH, RESTORE_PATH):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(f"{moto_server.endpoint_url}{path}", method="POST"))
        assert refused.value.code == 400
