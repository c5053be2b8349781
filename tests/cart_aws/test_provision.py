"""Provisioning creates every described resource on the moto server, and a second run changes
nothing; drift is corrected."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cart_api.settings import Settings
from cart_aws.aws import AwsClients
from cart_aws.provision import Provisioner, main, provision
from cart_aws.resources import cart_stack
from contracts import load_contract
from tests.conftest import receive_all


def test_provisioning_twice_changes_nothing(settings: Settings) -> None:
    # the fixture provisioned once already
    changes = provision(settings)
    assert {c.action for c in changes} == {"unchanged"}
    stack = cart_stack(settings)
    expected = len(stack.topics) + len(stack.queues) + len(stack.subscriptions) + len(stack.tables)
    expected += len(stack.buckets) + len(stack.notifications) + len(stack.glue_databases) + len(stack.alarms)
    assert len(changes) == expected


def test_every_described_resource_exists_as_described(settings: Settings, aws: AwsClients) -> None:
    topics = {t["TopicArn"].rsplit(":", 1)[1] for t in aws.sns.list_topics()["Topics"]}
    assert topics == {settings.purchases_topic, settings.alerts_topic, settings.filedrop_topic}

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
    for name in (
        settings.purchases_table,
        settings.idempotency_table,
        settings.category_kpis_table,
        settings.order_kpis_table,
    ):
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


def landing_events(aws: AwsClients, settings: Settings) -> list[dict[str, Any]]:
    return [json.loads(m["Body"]) for m in receive_all(aws, settings.landing_queue)]


def test_landing_queue_receives_the_lake_buckets_landing_events(settings: Settings, aws: AwsClients) -> None:
    url = aws.queue_url(settings.landing_queue)
    attrs = aws.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    redrive = json.loads(attrs["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == aws.queue_arn(settings.landing_dlq)
    assert int(redrive["maxReceiveCount"]) == settings.max_receive_count
    (statement,) = json.loads(attrs["Policy"])["Statement"]
    assert statement["Principal"] == {"Service": "s3.amazonaws.com"}
    assert statement["Condition"]["ArnLike"]["aws:SourceArn"] == [f"arn:aws:s3:::{settings.lake_bucket}"]
    assert statement["Condition"]["StringEquals"]["aws:SourceAccount"] == aws.account_id

    (config,) = aws.s3.get_bucket_notification_configuration(Bucket=settings.lake_bucket)["QueueConfigurations"]
    assert config["QueueArn"] == aws.queue_arn(settings.landing_queue)
    assert config["Events"] == ["s3:ObjectCreated:*"]
    assert config["Filter"]["Key"]["FilterRules"][0]["Value"] == "landing/"

    # S3 itself: a test event when the configuration was put, then only what lands under landing/
    assert [e.get("Event") for e in landing_events(aws, settings)] == ["s3:TestEvent"]
    aws.s3.put_object(Bucket=settings.lake_bucket, Key="landing/orders/a b.csv", Body=b"order_id\n1\n")
    aws.s3.put_object(Bucket=settings.lake_bucket, Key="bronze/x.json", Body=b"{}")
    (event,) = landing_events(aws, settings)
    (record,) = event["Records"]
    assert record["eventName"].startswith("ObjectCreated:")
    assert record["s3"]["object"]["key"] in ("landing/orders/a+b.csv", "landing%2Forders%2Fa+b.csv")

    (alarm,) = aws.cloudwatch.describe_alarms(AlarmNames=[f"{settings.landing_dlq}-not-empty"])["MetricAlarms"]
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": settings.landing_dlq}]
    assert alarm["AlarmActions"] == [aws.topic_arn(settings.alerts_topic)]


def test_other_notification_configurations_of_the_bucket_are_kept(settings: Settings, aws: AwsClients) -> None:
    other = aws.sqs.create_queue(QueueName="someone-elses-queue")["QueueUrl"]
    current = aws.s3.get_bucket_notification_configuration(Bucket=settings.lake_bucket)
    theirs: dict[str, Any] = {
        "Id": "exports",
        "QueueArn": aws.queue_arn("someone-elses-queue"),
        "Events": ["s3:ObjectRemoved:*"],
        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "exports/"}]}},
    }
    ours: dict[str, Any] = dict(current["QueueConfigurations"][0])
    drifted: dict[str, Any] = {**ours, "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "elsewhere/"}]}}}
    aws.s3.put_bucket_notification_configuration(
        Bucket=settings.lake_bucket,
        NotificationConfiguration={"QueueConfigurations": [theirs, drifted]},  # type: ignore[list-item]
    )
    (change,) = [c for c in provision(settings) if c.kind == "s3 notification"]
    assert (change.action, change.detail) == ("updated", "s3:ObjectCreated:* under landing/")
    configs = aws.s3.get_bucket_notification_configuration(Bucket=settings.lake_bucket)["QueueConfigurations"]
    by_id = {c["Id"]: c for c in configs}
    assert set(by_id) == {"exports", ours["Id"]}
    assert by_id["exports"]["QueueArn"] == aws.queue_arn("someone-elses-queue")
    assert by_id[ours["Id"]]["Filter"]["Key"]["FilterRules"][0]["Value"] == "landing/"
    assert {c.action for c in provision(settings)} == {"unchanged"}
    aws.sqs.delete_queue(QueueUrl=other)


def test_kpi_tables_are_keyed_as_the_kpi_contract_says(settings: Settings, aws: AwsClients) -> None:
    contract = load_contract("kpis")
    names = {"category_kpis": settings.category_kpis_table, "order_kpis": settings.order_kpis_table}
    for obj in contract.document.schema_ or []:
        assert obj.name in names
        custom = {c.property: c.value for c in obj.customProperties or []}
        wanted = [{"AttributeName": custom["dynamodbPartitionKey"], "KeyType": "HASH"}]
        if "dynamodbSortKey" in custom:
            wanted.append({"AttributeName": custom["dynamodbSortKey"], "KeyType": "RANGE"})
        table = aws.dynamodb.describe_table(TableName=names[obj.name])["Table"]
        assert table["KeySchema"] == wanted, obj.name
        # the keys are the contract's primary key, in its order
        assert [k["AttributeName"] for k in wanted] == list(contract.primary_key(obj.name))
        assert {d["AttributeName"]: d["AttributeType"] for d in table["AttributeDefinitions"]} == {
            k["AttributeName"]: "S" for k in wanted
        }


def test_a_table_keyed_otherwise_is_refused_with_what_to_do(settings: Settings, aws: AwsClients) -> None:
    aws.dynamodb.delete_table(TableName=settings.order_kpis_table)
    aws.dynamodb.create_table(
        TableName=settings.order_kpis_table,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "day", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "day", "AttributeType": "S"}],
    )
    with pytest.raises(RuntimeError, match=r"keyed on day \(HASH\).*order_date \(HASH\).*delete it"):
        provision(settings)


def test_the_lake_bucket_is_private_encrypted_and_moves_bronze_to_cheaper_storage(
    settings: Settings, aws: AwsClients
) -> None:
    bucket = settings.lake_bucket
    block = aws.s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert block == dict.fromkeys(
        ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"), True
    )
    (rule,) = aws.s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    rules = {r["ID"]: r for r in aws.s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    assert rules["bronze-infrequent-access"]["Filter"] == {"Prefix": "bronze/"}
    assert rules["bronze-infrequent-access"]["Transitions"] == [{"Days": 30, "StorageClass": "STANDARD_IA"}]
    assert rules["logs-archive"]["Expiration"] == {"Days": 365}
    assert rules["housekeeping"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
    # locally: no versioning and no deletion protection (cart_aws/provision.py says why)
    assert "Status" not in aws.s3.get_bucket_versioning(Bucket=bucket)
    assert not aws.dynamodb.describe_table(TableName=settings.purchases_table)["Table"].get("DeletionProtectionEnabled")


def test_bucket_drift_is_corrected(settings: Settings, aws: AwsClients) -> None:
    aws.s3.delete_bucket_lifecycle(Bucket=settings.lake_bucket)
    aws.s3.delete_public_access_block(Bucket=settings.lake_bucket)
    (change,) = [c for c in provision(settings) if c.kind == "s3 bucket"]
    assert (change.action, change.detail) == ("updated", "public access block, lifecycle")
    assert {c.action for c in provision(settings)} == {"unchanged"}


def test_on_real_aws_the_bucket_is_versioned_and_the_purchases_table_protected(
    settings: Settings, aws: AwsClients
) -> None:
    # what provisioning does when CART_AWS_ENDPOINT_URL is empty, applied to the moto server
    provisioner = Provisioner(aws)
    provisioner.on_aws = True
    changes = {(c.kind, c.name): c for c in provisioner.apply(cart_stack(settings))}
    assert changes[("s3 bucket", settings.lake_bucket)].detail == "versioning"
    assert changes[("dynamodb table", settings.purchases_table)].detail == "deletion protection"
    assert aws.s3.get_bucket_versioning(Bucket=settings.lake_bucket)["Status"] == "Enabled"
    assert aws.dynamodb.describe_table(TableName=settings.purchases_table)["Table"]["DeletionProtectionEnabled"]
    assert {c.action for c in provisioner.apply(cart_stack(settings))} == {"unchanged"}
    aws.dynamodb.update_table(TableName=settings.purchases_table, DeletionProtectionEnabled=False)
