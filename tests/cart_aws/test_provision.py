"""Provisioning creates every described resource on the moto server, and a second run changes
nothing; drift is corrected."""

from __future__ import annotations

import json

from cart_api.settings import Settings
from cart_aws.aws import AwsClients
from cart_aws.provision import main, provision
from cart_aws.resources import cart_stack


def test_provisioning_twice_changes_nothing(settings: Settings) -> None:
    # the fixture provisioned once already
    changes = provision(settings)
    assert {c.action for c in changes} == {"unchanged"}
    stack = cart_stack(settings)
    expected = len(stack.topics) + len(stack.queues) + len(stack.subscriptions) + len(stack.tables)
    assert len(changes) == expected + len(stack.buckets) + len(stack.glue_databases) + len(stack.alarms)


def test_every_described_resource_exists_as_described(settings: Settings, aws: AwsClients) -> None:
    topics = {t["TopicArn"].rsplit(":", 1)[1] for t in aws.sns.list_topics()["Topics"]}
    assert topics == {settings.purchases_topic, settings.alerts_topic}

    queue_url = aws.queue_url(settings.purchases_queue)
    attrs = aws.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    redrive = json.loads(attrs["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == aws.queue_arn(settings.purchases_dlq)
    assert int(redrive["maxReceiveCount"]) == settings.max_receive_count
    policy = json.loads(attrs["Policy"])
    assert policy["Statement"][0]["Condition"]["ArnEquals"]["aws:SourceArn"] == [
        aws.topic_arn(settings.purchases_topic)
    ]

    (sub,) = aws.sns.list_subscriptions_by_topic(TopicArn=aws.topic_arn(settings.purchases_topic))["Subscriptions"]
    assert sub["Endpoint"] == aws.queue_arn(settings.purchases_queue)
    sub_attrs = aws.sns.get_subscription_attributes(SubscriptionArn=sub["SubscriptionArn"])["Attributes"]
    assert sub_attrs["RawMessageDelivery"] == "true"

    table = aws.dynamodb.describe_table(TableName=settings.purchases_table)["Table"]
    assert table["KeySchema"] == [{"AttributeName": "purchase_id", "KeyType": "HASH"}]
    (index,) = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == settings.ingest_hour_index
    assert index["KeySchema"] == [
        {"AttributeName": "ingest_shard", "KeyType": "HASH"},
        {"AttributeName": "received_at", "KeyType": "RANGE"},
    ]
    ttl = aws.dynamodb.describe_time_to_live(TableName=settings.idempotency_table)["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "expires_at"
    for name in (settings.purchases_table, settings.idempotency_table):
        backups = aws.dynamodb.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"]
        assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"

    aws.s3.head_bucket(Bucket=settings.lake_bucket)
    assert aws.glue.get_database(Name=settings.glue_database)["Database"]["Name"] == settings.glue_database
    (alarm,) = aws.cloudwatch.describe_alarms(AlarmNames=[f"{settings.purchases_dlq}-not-empty"])["MetricAlarms"]
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": settings.purchases_dlq}]
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert alarm["AlarmActions"] == [aws.topic_arn(settings.alerts_topic)]
    assert alarm["Threshold"] == 1.0


def test_drift_is_corrected_and_reported(settings: Settings, aws: AwsClients) -> None:
    queue_url = aws.queue_url(settings.purchases_queue)
    policy = aws.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["Policy"])["Attributes"]["Policy"]
    # moto 5.2.5 clears attributes left out of SetQueueAttributes (AWS keeps them): resend Policy
    aws.sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"VisibilityTimeout": "5", "Policy": policy})
    sub_arn = aws.sns.list_subscriptions_by_topic(TopicArn=aws.topic_arn(settings.purchases_topic))["Subscriptions"][0][
        "SubscriptionArn"
    ]
    aws.sns.set_subscription_attributes(
        SubscriptionArn=sub_arn, AttributeName="RawMessageDelivery", AttributeValue="false"
    )
    aws.dynamodb.update_continuous_backups(
        TableName=settings.purchases_table, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": False}
    )
    changed = {(c.kind, c.action, c.detail) for c in provision(settings) if c.action != "unchanged"}
    assert changed == {
        ("sqs queue", "updated", "VisibilityTimeout"),
        ("sns subscription", "updated", "RawMessageDelivery"),
        ("dynamodb table", "updated", "point-in-time recovery"),
    }
    attrs = aws.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["VisibilityTimeout"])["Attributes"]
    assert attrs["VisibilityTimeout"] == str(settings.visibility_timeout)


def test_missing_index_is_added_to_an_existing_table(settings: Settings, aws: AwsClients) -> None:
    aws.dynamodb.update_table(
        TableName=settings.purchases_table,
        GlobalSecondaryIndexUpdates=[{"Delete": {"IndexName": settings.ingest_hour_index}}],
    )
    (change,) = [c for c in provision(settings) if c.kind == "dynamodb table" and c.name == settings.purchases_table]
    assert (change.action, change.detail) == ("updated", f"index {settings.ingest_hour_index}")
    table = aws.dynamodb.describe_table(TableName=settings.purchases_table)["Table"]
    assert [i["IndexName"] for i in table["GlobalSecondaryIndexes"]] == [settings.ingest_hour_index]


def test_cli_prints_what_it_did(settings: Settings, monkeypatch: object, capsys: object) -> None:
    import pytest

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.setenv("CART_AWS_ENDPOINT_URL", str(settings.aws_endpoint_url))
    assert main([]) == 0
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "unchanged  sqs queue cart-purchases" in out


def test_an_index_with_other_keys_is_rebuilt_with_the_described_ones(settings: Settings, aws: AwsClients) -> None:
    # the ingest-hour index as it was before it was sharded: keyed on the bare hour
    index = settings.ingest_hour_index
    aws.dynamodb.update_table(
        TableName=settings.purchases_table, GlobalSecondaryIndexUpdates=[{"Delete": {"IndexName": index}}]
    )
    aws.dynamodb.update_table(
        TableName=settings.purchases_table,
        AttributeDefinitions=[
            {"AttributeName": "ingest_hour", "AttributeType": "S"},
            {"AttributeName": "received_at", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexUpdates=[
            {
                "Create": {
                    "IndexName": index,
                    "KeySchema": [
                        {"AttributeName": "ingest_hour", "KeyType": "HASH"},
                        {"AttributeName": "received_at", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
            }
        ],
    )
    (change,) = [c for c in provision(settings) if c.kind == "dynamodb table" and c.name == settings.purchases_table]
    assert (change.action, change.detail) == ("updated", f"index {index} re-keyed (ingest_shard, received_at)")
    (rebuilt,) = aws.dynamodb.describe_table(TableName=settings.purchases_table)["Table"]["GlobalSecondaryIndexes"]
    assert [k["AttributeName"] for k in rebuilt["KeySchema"]] == ["ingest_shard", "received_at"]
    assert {c.action for c in provision(settings)} == {"unchanged"}
