"""Apply the declarative resource description with idempotent boto3 calls.

Each resource is read first and created or corrected only when it differs from the
description, so running provisioning twice changes nothing. The same calls work against the
local moto server and real AWS (moto's CloudFormation skips SNS subscriptions, Glue databases
and alarms, so the local system is not provisioned through CloudFormation; the same description
renders the template for AWS, ``cart_aws.template``).

What provisioning leaves out, and why:

- the kinds that exist only in the template (functions, their queue trigger, the API, its
  secret, WAF and Cognito, the metric alarms on them, the log archive): locally the API and the
  worker run as processes, so there is nothing for them to attach to;
- against the emulator (``CART_AWS_ENDPOINT_URL`` set), a table's deletion protection and the
  bucket's versioning: the emulator's tables are disposable (tests drop them), and versioning
  would keep every landed and archived file's old versions in its memory. Against real AWS both
  are applied.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from cart_aws.aws import AwsClients
from cart_aws.resources import (
    Bucket,
    BucketNotification,
    GlueDatabase,
    Queue,
    QueueDepthAlarm,
    Stack,
    Subscription,
    Table,
    Topic,
    cart_stack,
    queue_depth_alarm,
    queue_policy_statements,
)
from cart_aws.settings import AwsSettings


@dataclass(frozen=True)
class Change:
    kind: str
    name: str
    action: str  # "created", "updated" or "unchanged"
    detail: str = ""


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class _Arns:
    """ARNs of described resources in this account and region (``resources.Arns``)."""

    def __init__(self, clients: AwsClients) -> None:
        self.aws = clients

    def topic(self, name: str) -> str:
        return self.aws.topic_arn(name)

    def queue(self, name: str) -> str:
        return self.aws.queue_arn(name)

    def bucket(self, name: str) -> str:
        return f"arn:aws:s3:::{name}"

    @property
    def account_id(self) -> str:
        return self.aws.account_id

    def queue_name(self, name: str) -> str:
        return name


class Provisioner:
    """Brings AWS in line with a ``Stack``; every method reports what it did."""

    def __init__(self, clients: AwsClients) -> None:
        self.aws = clients
        self.arns = _Arns(clients)
        # applied on real AWS only (module docstring)
        self.on_aws = not clients.settings.is_emulated

    def apply(self, stack: Stack) -> list[Change]:
        changes: list[Change] = []
        changes += [self.topic(t, stack.tags) for t in stack.topics]
        changes += [self.queue(q, stack) for q in stack.queues]
        changes += [self.subscription(s) for s in stack.subscriptions]
        changes += [self.table(t, stack.tags) for t in stack.tables]
        changes += [self.bucket(b, stack.tags) for b in stack.buckets]
        # after the queues (with the policy letting the bucket send) and the buckets: AWS checks
        # that it may deliver to the queue when the configuration is put
        changes += [self.notification(n) for n in stack.notifications]
        changes += [self.glue_database(d) for d in stack.glue_databases]
        changes += [self.alarm(a) for a in stack.alarms]
        return changes

    # --- SNS --------------------------------------------------------------------------------
    def topic(self, topic: Topic, tags: dict[str, str]) -> Change:
        arn = self.aws.topic_arn(topic.name)
        try:
            self.aws.sns.get_topic_attributes(TopicArn=arn)
            return Change("sns topic", topic.name, "unchanged")
        except ClientError as exc:
            if _error_code(exc) != "NotFound":
                raise
        self.aws.sns.create_topic(Name=topic.name, Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
        return Change("sns topic", topic.name, "created", topic.purpose)

    def subscription(self, sub: Subscription) -> Change:
        topic_arn = self.aws.topic_arn(sub.topic)
        queue_arn = self.aws.queue_arn(sub.queue)
        wanted = {"RawMessageDelivery": "true" if sub.raw_message_delivery else "false"}
        name = f"{sub.topic} -> {sub.queue}"
        for existing in self._subscriptions(topic_arn):
            if existing["Protocol"] == "sqs" and existing["Endpoint"] == queue_arn:
                arn = existing["SubscriptionArn"]
                attrs = self.aws.sns.get_subscription_attributes(SubscriptionArn=arn)["Attributes"]
                drift = {k: v for k, v in wanted.items() if attrs.get(k, "false") != v}
                for key, value in drift.items():
                    self.aws.sns.set_subscription_attributes(
                        SubscriptionArn=arn, AttributeName=key, AttributeValue=value
                    )
                if drift:
                    return Change("sns subscription", name, "updated", ", ".join(drift))
                return Change("sns subscription", name, "unchanged")
        self.aws.sns.subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=queue_arn,
            Attributes=wanted,
            ReturnSubscriptionArn=True,
        )
        return Change("sns subscription", name, "created", "raw message delivery")

    def _subscriptions(self, topic_arn: str) -> Iterator[dict[str, Any]]:
        paginator = self.aws.sns.get_paginator("list_subscriptions_by_topic")
        for page in paginator.paginate(TopicArn=topic_arn):
            for sub in page.get("Subscriptions", []):
                yield dict(sub)

    # --- SQS --------------------------------------------------------------------------------
    def _queue_attributes(self, queue: Queue, stack: Stack) -> dict[str, str]:
        attrs = {
            "VisibilityTimeout": str(queue.visibility_timeout),
            "MessageRetentionPeriod": str(queue.retention_seconds),
            "ReceiveMessageWaitTimeSeconds": str(queue.long_poll_seconds),
        }
        if queue.dead_letter_queue:
            attrs["RedrivePolicy"] = json.dumps(
                {
                    "deadLetterTargetArn": self.aws.queue_arn(queue.dead_letter_queue),
                    "maxReceiveCount": str(queue.max_receive_count),
                },
                sort_keys=True,
            )
        statements = queue_policy_statements(queue, stack, self.arns)
        if statements:
            attrs["Policy"] = json.dumps({"Version": "2012-10-17", "Statement": statements}, sort_keys=True)
        return attrs

    def queue(self, queue: Queue, stack: Stack) -> Change:
        wanted = self._queue_attributes(queue, stack)
        try:
            url = self.aws.queue_url(queue.name)
        except ClientError as exc:
            if "NonExistentQueue" not in _error_code(exc):
                raise
            self.aws.sqs.create_queue(QueueName=queue.name, Attributes=wanted, tags=stack.tags)  # type: ignore[arg-type]
            detail = queue.purpose
            if queue.dead_letter_queue:
                detail += f" (DLQ {queue.dead_letter_queue} after {queue.max_receive_count} receives)"
            return Change("sqs queue", queue.name, "created", detail)
        response = self.aws.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
        current: dict[str, str] = {str(k): v for k, v in response["Attributes"].items()}
        drift = {k: v for k, v in wanted.items() if not _same_attribute(current.get(k), v)}
        if drift:  # send them all: moto drops attributes a SetQueueAttributes call leaves out
            self.aws.sqs.set_queue_attributes(QueueUrl=url, Attributes=wanted)  # type: ignore[arg-type]
            return Change("sqs queue", queue.name, "updated", ", ".join(sorted(drift)))
        return Change("sqs queue", queue.name, "unchanged")

    # --- DynamoDB ---------------------------------------------------------------------------
    def table(self, table: Table, tags: dict[str, str]) -> Change:
        ddb = self.aws.dynamodb
        try:
            current = ddb.describe_table(TableName=table.name)["Table"]
        except ClientError as exc:
            if _error_code(exc) != "ResourceNotFoundException":
                raise
            current = None
        if current is None:
            kwargs: dict[str, Any] = {
                "TableName": table.name,
                "BillingMode": "PAY_PER_REQUEST",
                "KeySchema": table.key_schema(),
                "AttributeDefinitions": table.attribute_definitions(),
                "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
            }
            if table.indexes:
                kwargs["GlobalSecondaryIndexes"] = [table.index_spec(i.name) for i in table.indexes]
            if table.deletion_protection and self.on_aws:
                kwargs["DeletionProtectionEnabled"] = True
            ddb.create_table(**kwargs)
            ddb.get_waiter("table_exists").wait(TableName=table.name)
            self._ensure_ttl(table)
            self._ensure_point_in_time_recovery(table)
            return Change("dynamodb table", table.name, "created", table.purpose)
        if [dict(k) for k in current["KeySchema"]] != table.key_schema():
            # DynamoDB cannot change a table's primary key, and dropping a table is not for a
            # provisioning run to decide: say what differs and what to do
            found = ", ".join(f"{k['AttributeName']} ({k['KeyType']})" for k in current["KeySchema"])
            wanted = ", ".join(f"{k['AttributeName']} ({k['KeyType']})" for k in table.key_schema())
            raise RuntimeError(
                f"DynamoDB table {table.name} is keyed on {found}, but the description wants {wanted}: a table's "
                "key cannot be changed. Back the table up, delete it and run cart-provision again (or point the "
                "setting at another table name)."
            )
        updates: list[str] = []
        existing = {g["IndexName"]: g["KeySchema"] for g in current.get("GlobalSecondaryIndexes", [])}
        for index in table.indexes:
            keys = [index.hash_key] + ([index.range_key] if index.range_key else [])
            rekeyed = index.name in existing and existing[index.name] != table.index_spec(index.name)["KeySchema"]
            if rekeyed:
                # DynamoDB cannot change the keys of an index: drop it and build it again (the
                # ingest-hour index moved from ingest_hour to ingest_shard); items without the new
                # key attribute are not in the rebuilt index (cart_aws/ingest_shards.py)
                ddb.update_table(
                    TableName=table.name, GlobalSecondaryIndexUpdates=[{"Delete": {"IndexName": index.name}}]
                )
                self._wait_index_deleted(table.name, index.name)
            if rekeyed or index.name not in existing:
                ddb.update_table(
                    TableName=table.name,
                    AttributeDefinitions=[
                        {"AttributeName": k, "AttributeType": table.attributes[k]}  # type: ignore[typeddict-item]
                        for k in keys
                    ],
                    GlobalSecondaryIndexUpdates=[{"Create": table.index_spec(index.name)}],  # type: ignore[typeddict-item]
                )
                updates.append(f"index {index.name} re-keyed ({', '.join(keys)})" if rekeyed else f"index {index.name}")
        if self._ensure_ttl(table):
            updates.append(f"ttl {table.ttl_attribute}")
        if self._ensure_point_in_time_recovery(table):
            updates.append("point-in-time recovery")
        if table.deletion_protection and self.on_aws and not current.get("DeletionProtectionEnabled"):
            ddb.update_table(TableName=table.name, DeletionProtectionEnabled=True)
            updates.append("deletion protection")
        if updates:
            return Change("dynamodb table", table.name, "updated", ", ".join(updates))
        return Change("dynamodb table", table.name, "unchanged")

    def _wait_index_deleted(self, table: str, index: str, timeout: float = 1_800.0, interval: float = 5.0) -> None:
        """Until DynamoDB has dropped the index (minutes on AWS, at once on moto): an index of the
        same name cannot be created while the old one is being deleted."""
        deadline = time.monotonic() + timeout
        while True:
            current = self.aws.dynamodb.describe_table(TableName=table)["Table"]
            if index not in {g["IndexName"] for g in current.get("GlobalSecondaryIndexes", [])}:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"index {index} of DynamoDB table {table} is still being deleted after {timeout:.0f} s; "
                    "run cart-provision again once it is gone (aws dynamodb describe-table)"
                )
            time.sleep(interval)

    def _ensure_ttl(self, table: Table) -> bool:
        if not table.ttl_attribute:
            return False
        ddb = self.aws.dynamodb
        ttl = ddb.describe_time_to_live(TableName=table.name)["TimeToLiveDescription"]
        if ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING") and ttl.get("AttributeName") == table.ttl_attribute:
            return False
        ddb.update_time_to_live(
            TableName=table.name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute},
        )
        return True

    def _ensure_point_in_time_recovery(self, table: Table) -> bool:
        ddb = self.aws.dynamodb
        backups = ddb.describe_continuous_backups(TableName=table.name)["ContinuousBackupsDescription"]
        status = backups.get("PointInTimeRecoveryDescription", {}).get("PointInTimeRecoveryStatus")
        if (status == "ENABLED") == table.point_in_time_recovery:
            return False
        ddb.update_continuous_backups(
            TableName=table.name,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": table.point_in_time_recovery},
        )
        return True

    # --- S3 ---------------------------------------------------------------------------------
    def bucket(self, bucket: Bucket, tags: dict[str, str]) -> Change:
        s3 = self.aws.s3
        try:
            s3.head_bucket(Bucket=bucket.name)
            created = False
        except ClientError as exc:
            if _error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
                raise
            region = self.aws.settings.aws_region
            if region == "us-east-1":
                s3.create_bucket(Bucket=bucket.name)
            else:
                s3.create_bucket(
                    Bucket=bucket.name,
                    CreateBucketConfiguration={"LocationConstraint": region},  # type: ignore[typeddict-item]
                )
            s3.put_bucket_tagging(
                Bucket=bucket.name, Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]}
            )
            created = True
        updates = self._ensure_bucket_settings(bucket)
        if created:
            return Change("s3 bucket", bucket.name, "created", bucket.purpose)
        if updates:
            return Change("s3 bucket", bucket.name, "updated", ", ".join(updates))
        return Change("s3 bucket", bucket.name, "unchanged")

    def _ensure_bucket_settings(self, bucket: Bucket) -> list[str]:
        """Public access blocked, default encryption, lifecycle rules and (on AWS) versioning as
        described; the names of those that had to be put."""
        s3 = self.aws.s3
        name = bucket.name
        updates: list[str] = []
        block = {
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        }
        current = _read(lambda: s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"])
        if current is None or any(current.get(k) is not True for k in block):
            s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=block)  # type: ignore[arg-type]
            updates.append("public access block")
        rules = _read(lambda: s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"])
        algorithms = [r.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm") for r in rules or []]
        if algorithms != [bucket.encryption]:
            config: Any = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": bucket.encryption}}]}
            s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration=config)
            updates.append("encryption")
        wanted = lifecycle_rules(bucket)
        found = _read(lambda: s3.get_bucket_lifecycle_configuration(Bucket=name)["Rules"]) or []
        if not _same_lifecycle(found, wanted):
            s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": wanted})  # type: ignore[typeddict-item]
            updates.append("lifecycle")
        if bucket.versioning and self.on_aws and s3.get_bucket_versioning(Bucket=name).get("Status") != "Enabled":
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
            updates.append("versioning")
        return updates

    def notification(self, wanted: BucketNotification) -> Change:
        """Put the bucket's notification configuration with ``wanted`` in it, keeping every other
        configuration the bucket has (topics, Lambdas, EventBridge, other queues): S3 replaces the
        whole configuration on each put, so it is read, merged by id and written back whole."""
        s3 = self.aws.s3
        name = f"{wanted.bucket} {wanted.prefix} -> {wanted.queue}"
        current: dict[str, Any] = {
            k: v
            for k, v in s3.get_bucket_notification_configuration(Bucket=wanted.bucket).items()
            if k != "ResponseMetadata"
        }
        entry: dict[str, Any] = {
            "Id": wanted.id,
            "QueueArn": self.aws.queue_arn(wanted.queue),
            "Events": list(wanted.events),
            "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": wanted.prefix}]}},
        }
        queues = [dict(q) for q in current.get("QueueConfigurations", [])]
        # ours: the same id, or (set up by hand or under an older id) one sending to our queue;
        # both are replaced, since S3 refuses two configurations overlapping on prefix and events
        ours = [q for q in queues if q.get("Id") == wanted.id or q.get("QueueArn") == entry["QueueArn"]]
        if len(ours) == 1 and _same_notification(ours[0], entry):
            return Change("s3 notification", name, "unchanged")
        others = [q for q in queues if q not in ours]
        config = {**current, "QueueConfigurations": [*others, entry]}
        s3.put_bucket_notification_configuration(Bucket=wanted.bucket, NotificationConfiguration=config)  # type: ignore[arg-type]
        if ours:
            return Change("s3 notification", name, "updated", f"{', '.join(wanted.events)} under {wanted.prefix}")
        return Change("s3 notification", name, "created", wanted.purpose)

    # --- Glue (moto's CloudFormation skips AWS::Glue::Database, so it is created here) --------
    def glue_database(self, database: GlueDatabase) -> Change:
        glue = self.aws.glue
        try:
            current = glue.get_database(Name=database.name)["Database"]
        except ClientError as exc:
            if _error_code(exc) != "EntityNotFoundException":
                raise
            glue.create_database(DatabaseInput={"Name": database.name, "Description": database.purpose})
            return Change("glue database", database.name, "created", database.purpose)
        if current.get("Description") != database.purpose:
            glue.update_database(
                Name=database.name, DatabaseInput={"Name": database.name, "Description": database.purpose}
            )
            return Change("glue database", database.name, "updated", "description")
        return Change("glue database", database.name, "unchanged")

    # --- CloudWatch (moto's CloudFormation skips AWS::CloudWatch::Alarm) ----------------------
    def alarm(self, alarm: QueueDepthAlarm) -> Change:
        wanted = queue_depth_alarm(alarm, self.arns)
        found = self.aws.cloudwatch.describe_alarms(AlarmNames=[alarm.name]).get("MetricAlarms", [])
        if found and all(_same_value(found[0].get(k), v) for k, v in wanted.items()):
            return Change("cloudwatch alarm", alarm.name, "unchanged")
        self.aws.cloudwatch.put_metric_alarm(**wanted)
        return Change("cloudwatch alarm", alarm.name, "updated" if found else "created", alarm.purpose)


def lifecycle_rules(bucket: Bucket) -> list[dict[str, Any]]:
    """The bucket's lifecycle rules as PutBucketLifecycleConfiguration takes them."""
    rules: list[dict[str, Any]] = []
    for rule in bucket.lifecycle:
        entry: dict[str, Any] = {
            "ID": rule.id,
            "Filter": {"Prefix": rule.prefix},
            "Status": "Enabled",
            "Transitions": [{"Days": rule.transition_days, "StorageClass": rule.storage_class}],
        }
        if rule.expiration_days:
            entry["Expiration"] = {"Days": rule.expiration_days}
        rules.append(entry)
    rules.append(
        {
            "ID": "housekeeping",
            "Filter": {"Prefix": ""},
            "Status": "Enabled",
            "NoncurrentVersionExpiration": {"NoncurrentDays": bucket.noncurrent_version_days},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": bucket.abort_multipart_days},
        }
    )
    return rules


def _same_lifecycle(current: list[Any], wanted: list[dict[str, Any]]) -> bool:
    """The same rules by id, on the keys the description sets (AWS may answer more of them)."""
    found = {str(r.get("ID")): r for r in current}
    if set(found) != {r["ID"] for r in wanted}:
        return False
    return all(_leaves_as_str({k: found[r["ID"]].get(k) for k in r}) == _leaves_as_str(r) for r in wanted)


def _read(call: Callable[[], Any]) -> Any:
    """What a Get… call answers, or None when the bucket has no such configuration yet."""
    try:
        return call()
    except ClientError as exc:
        if _error_code(exc).startswith("NoSuch") or _error_code(exc).endswith("NotFoundError"):
            return None
        raise


def _same_value(current: Any, wanted: Any) -> bool:
    if isinstance(wanted, list):
        return isinstance(current, list) and [dict(c) if isinstance(c, dict) else c for c in current] == wanted
    return bool(current == wanted)


def _same_notification(current: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """AWS answers filter rule names capitalized (``Prefix``) whatever case they were put in."""

    def rules(config: dict[str, Any]) -> list[tuple[str, str]]:
        found = config.get("Filter", {}).get("Key", {}).get("FilterRules", [])
        return sorted((str(r["Name"]).lower(), str(r["Value"])) for r in found)

    return (
        current.get("Id") == wanted["Id"]
        and current.get("QueueArn") == wanted["QueueArn"]
        and sorted(current.get("Events", [])) == sorted(wanted["Events"])
        and rules(current) == rules(wanted)
    )


def _same_attribute(current: str | None, wanted: str) -> bool:
    if current is None:
        return False
    if wanted.startswith("{"):
        try:
            return bool(_leaves_as_str(json.loads(current)) == _leaves_as_str(json.loads(wanted)))
        except ValueError:
            return False
    return current == wanted


def _leaves_as_str(value: Any) -> Any:
    """AWS and moto differ on whether numbers inside policy JSON are strings; compare as text. IAM
    also treats a one-element list of condition values as the value alone, and may answer either."""
    if isinstance(value, dict):
        return {k: _leaves_as_str(v) for k, v in value.items()}
    if isinstance(value, list) and len(value) == 1:
        return _leaves_as_str(value[0])
    if isinstance(value, list):
        return [_leaves_as_str(v) for v in value]
    return str(value)


def provision(settings: AwsSettings, clients: AwsClients | None = None) -> list[Change]:
    """Create or correct every resource of the cart stack; safe to run any number of times."""
    return Provisioner(clients or AwsClients(settings)).apply(cart_stack(settings))


def format_changes(changes: list[Change]) -> str:
    width = max(len(f"{c.kind} {c.name}") for c in changes)
    lines = [f"  {c.action:<9}  {(c.kind + ' ' + c.name):<{width}}  {c.detail}".rstrip() for c in changes]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cart-provision",
        description=(
            "Create or correct the cart lakehouse's AWS resources (SNS topics, SQS queues and "
            "DLQs, DynamoDB tables, S3 bucket and its event notifications, Glue database, CloudWatch "
            "alarms) idempotently. Reads CART_* settings; against "
            "the local moto server by default (CART_AWS_ENDPOINT_URL)."
        ),
    )
    parser.parse_args(argv)
    settings = AwsSettings()
    where = settings.aws_endpoint_url or f"AWS {settings.aws_region}"
    changes = provision(settings)
    print(f"Provisioned the cart stack on {where}:")
    print(format_changes(changes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
