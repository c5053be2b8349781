"""Every AWS resource the system uses, described once as data.

``provision.apply`` turns this description into idempotent boto3 calls, which behave the same
against the local moto server and real AWS.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cart_aws.settings import AwsSettings


@dataclass(frozen=True)
class Topic:
    name: str
    purpose: str


@dataclass(frozen=True)
class Queue:
    name: str
    purpose: str
    visibility_timeout: int = 30
    retention_seconds: int = 1_209_600  # 14 days, the maximum: a DLQ keeps messages longest
    dead_letter_queue: str | None = None
    max_receive_count: int = 3
    long_poll_seconds: int = 20


@dataclass(frozen=True)
class Subscription:
    """A queue subscribed to a topic; raw delivery keeps the published JSON as the SQS body."""

    topic: str
    queue: str
    raw_message_delivery: bool = True


@dataclass(frozen=True)
class Index:
    name: str
    hash_key: str
    range_key: str | None = None


@dataclass(frozen=True)
class Table:
    name: str
    purpose: str
    hash_key: str
    attributes: dict[str, str]  # attribute name -> DynamoDB scalar type (S, N, B) for keys
    indexes: tuple[Index, ...] = ()
    range_key: str | None = None  # the sort key of a composite primary key
    ttl_attribute: str | None = None
    # continuous backups: restore to any second of the last 35 days on AWS, and the export to S3
    # that local snapshots use (cart_dev/snapshot.py)
    point_in_time_recovery: bool = True


@dataclass(frozen=True)
class Bucket:
    name: str
    purpose: str


@dataclass(frozen=True)
class BucketNotification:
    """S3 events of a bucket's objects under a prefix, sent to a queue.

    The queue's policy lets the bucket send to it (AWS refuses the configuration otherwise), and
    the configuration is merged by ``id`` into whatever else the bucket notifies.
    """

    id: str
    purpose: str
    bucket: str
    queue: str
    prefix: str
    events: tuple[str, ...] = ("s3:ObjectCreated:*",)


@dataclass(frozen=True)
class GlueDatabase:
    """A Glue Data Catalog database; the lakehouse registers its tables and partitions in it."""

    name: str
    purpose: str


@dataclass(frozen=True)
class QueueDepthAlarm:
    """A CloudWatch alarm on a queue's visible messages, notifying a topic (in alarm and back to OK)."""

    name: str
    purpose: str
    queue: str
    topic: str
    threshold: int = 1
    period_seconds: int = 60
    evaluation_periods: int = 1


@dataclass(frozen=True)
class Stack:
    topics: tuple[Topic, ...] = ()
    queues: tuple[Queue, ...] = ()
    subscriptions: tuple[Subscription, ...] = ()
    tables: tuple[Table, ...] = ()
    buckets: tuple[Bucket, ...] = ()
    notifications: tuple[BucketNotification, ...] = ()
    glue_databases: tuple[GlueDatabase, ...] = ()
    alarms: tuple[QueueDepthAlarm, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)


def cart_stack(settings: AwsSettings) -> Stack:
    """The cart lakehouse's resources, named by settings."""
    s = settings
    return Stack(
        topics=(
            Topic(s.purchases_topic, "Accepted purchases, published by the API"),
            Topic(s.alerts_topic, "Operational alerts (failed runs, DLQ depth)"),
            Topic(s.filedrop_topic, "File sets of the file drop: processed or rejected, with files, rows and KPIs"),
        ),
        queues=(
            Queue(s.purchases_dlq, "Purchases the worker could not store, with the reason"),
            Queue(
                s.purchases_queue,
                "Purchases for the worker to store in DynamoDB",
                visibility_timeout=s.visibility_timeout,
                dead_letter_queue=s.purchases_dlq,
                max_receive_count=s.max_receive_count,
            ),
            Queue(s.landing_dlq, "S3 events of landed files the file-drop sensor could not read"),
            Queue(
                s.landing_queue,
                "S3 events of files landed under landing/ in the lake bucket, for the file-drop sensor",
                visibility_timeout=s.visibility_timeout,
                dead_letter_queue=s.landing_dlq,
                max_receive_count=s.max_receive_count,
            ),
        ),
        subscriptions=(Subscription(s.purchases_topic, s.purchases_queue),),
        tables=(
            Table(
                s.purchases_table,
                "Stored purchases; the lakehouse reads one ingest hour through the index",
                hash_key="purchase_id",
                attributes={"purchase_id": "S", "ingest_shard": "S", "received_at": "S"},
                # keyed on the hour plus a shard (cart_aws/ingest_shards.py), not the hour alone:
                # one partition key per hour would cap the table's writes at ~1,000/s
                indexes=(Index(s.ingest_hour_index, "ingest_shard", "received_at"),),
            ),
            Table(
                s.idempotency_table,
                "Idempotency-Key records of the API (expire after a day)",
                hash_key="idempotency_key",
                attributes={"idempotency_key": "S"},
                ttl_attribute="expires_at",
            ),
            # keys as contracts/kpis.odcs.yaml states them (dynamodbPartitionKey, dynamodbSortKey);
            # tests/cart_aws/test_provision.py holds the two to each other
            Table(
                s.category_kpis_table,
                "File-drop KPIs per product category and order date (pushed from the Delta table)",
                hash_key="category",
                range_key="order_date",
                attributes={"category": "S", "order_date": "S"},
            ),
            Table(
                s.order_kpis_table,
                "File-drop KPIs per order date (pushed from the Delta table)",
                hash_key="order_date",
                attributes={"order_date": "S"},
            ),
        ),
        buckets=(Bucket(s.lake_bucket, "The lake: bronze, silver and gold layers; the file drop's landing/"),),
        notifications=(
            BucketNotification(
                "cart-landing-files",
                "Files landed for the file drop",
                bucket=s.lake_bucket,
                queue=s.landing_queue,
                prefix="landing/",
            ),
        ),
        glue_databases=(GlueDatabase(s.glue_database, "Tables of the cart lakehouse (bronze, silver, gold)"),),
        alarms=(
            QueueDepthAlarm(
                f"{s.purchases_dlq}-not-empty",
                "Purchases are waiting in the dead-letter queue",
                queue=s.purchases_dlq,
                topic=s.alerts_topic,
            ),
            QueueDepthAlarm(
                f"{s.landing_dlq}-not-empty",
                "S3 events of landed files are waiting in the landing dead-letter queue (files not recorded)",
                queue=s.landing_dlq,
                topic=s.alerts_topic,
            ),
        ),
        tags={"project": "cart-lakehouse"},
    )
