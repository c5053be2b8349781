"""Every AWS resource the system uses, described once as data.

Two outputs are made from this one description:

- ``provision.apply`` turns it into idempotent boto3 calls, which behave the same against the
  local moto server and real AWS;
- ``cart_aws.template.render`` turns it into the CloudFormation template ``deploy/template.yaml``.

Some kinds exist only in the template: the Lambda functions, their queue trigger, the REST API,
the API keys' secret, the WAF web ACL, the Cognito user pool, the metric alarms on the functions
and the API, and the log archive. Locally the API and the worker run as processes
(``cart-dev``), so provisioning has nothing to create for them. Functions name what they call
(``Access``), and the template derives their least-privilege IAM roles from it; handlers are
dotted names (strings), so this module imports nothing above ``cart_aws``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from cart_aws.limits import API_LIMITS, ApiLimits
from cart_aws.metrics import NAMESPACE
from cart_aws.settings import AwsSettings

API_FUNCTION = "cart-api"
WORKER_FUNCTION = "cart-worker"


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
    # refuses DeleteTable (and a stack update that would replace the table); applied on real AWS
    # only: the local emulator's tables are disposable and tests drop them
    deletion_protection: bool = False

    def key_schema(self) -> list[dict[str, str]]:
        """``KeySchema`` as CreateTable and CloudFormation both take it."""
        schema = [{"AttributeName": self.hash_key, "KeyType": "HASH"}]
        if self.range_key:
            schema.append({"AttributeName": self.range_key, "KeyType": "RANGE"})
        return schema

    def attribute_definitions(self) -> list[dict[str, str]]:
        """The key attributes of the table and its indexes (DynamoDB refuses others)."""
        used = {self.hash_key} | {i.hash_key for i in self.indexes}
        used |= {k for k in [self.range_key, *(i.range_key for i in self.indexes)] if k}
        return [{"AttributeName": n, "AttributeType": t} for n, t in self.attributes.items() if n in used]

    def index_spec(self, name: str) -> dict[str, Any]:
        """A global secondary index as CreateTable and CloudFormation both take it."""
        index = next(i for i in self.indexes if i.name == name)
        schema = [{"AttributeName": index.hash_key, "KeyType": "HASH"}]
        if index.range_key:
            schema.append({"AttributeName": index.range_key, "KeyType": "RANGE"})
        return {"IndexName": name, "KeySchema": schema, "Projection": {"ProjectionType": "ALL"}}


@dataclass(frozen=True)
class LifecycleRule:
    """Objects under a prefix move to a cheaper storage class after some days (and may expire)."""

    id: str
    prefix: str
    transition_days: int
    storage_class: str  # an S3 storage class: STANDARD_IA, GLACIER_IR, GLACIER, DEEP_ARCHIVE ...
    expiration_days: int | None = None


@dataclass(frozen=True)
class Bucket:
    """A private, encrypted bucket (public access blocked: all four settings)."""

    name: str
    purpose: str
    # keeps every overwritten or deleted object version; applied on real AWS only: locally it
    # would keep every landed and archived file's old versions in the emulator's memory
    versioning: bool = True
    encryption: str = "AES256"  # SSE-S3: no key to manage, and no KMS cost per request
    lifecycle: tuple[LifecycleRule, ...] = ()
    noncurrent_version_days: int = 30  # old versions expire after this (versioned buckets)
    abort_multipart_days: int = 7  # parts of uploads never completed are removed after this


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
class Access:
    """What a function calls on one described resource: IAM actions allowed on that resource's
    ARN only."""

    kind: Literal["topic", "queue", "table"]
    name: str
    actions: tuple[str, ...]


@dataclass(frozen=True)
class NameOf:
    """An environment variable's value: the deployed name of a described resource (on AWS it
    carries the stage suffix, so the function is told it rather than the local default)."""

    kind: Literal["topic", "queue", "table"]
    name: str


@dataclass(frozen=True)
class Function:
    """A Lambda function of the project's code (a zip in the code bucket), with its own log group
    and an IAM role allowing exactly ``access`` (plus writing its own logs)."""

    name: str
    purpose: str
    handler: str  # dotted path of the handler, e.g. "cart_api.lambda_handler.api_handler"
    code_key_parameter: str  # the template parameter holding the zip's S3 key
    environment: dict[str, str | NameOf] = field(default_factory=dict)
    access: tuple[Access, ...] = ()
    metrics_namespace: str | None = None  # PutMetricData allowed into this namespace only
    memory_mb: int = 512
    timeout_seconds: int = 30
    log_retention_days: int = 30
    runtime: str = "python3.11"


@dataclass(frozen=True)
class QueueTrigger:
    """An SQS event source mapping: the function receives the queue's messages in batches and
    reports the failed ones (``ReportBatchItemFailures``), so only those are retried."""

    function: str
    queue: str
    batch_size: int = 10
    max_concurrency: int = 10  # at most this many concurrent invocations (Lambda's minimum is 2)
    report_batch_item_failures: bool = True


@dataclass(frozen=True)
class Api:
    """A REST API in front of a function (every path and method proxied to it), throttled per
    stage, behind a WAF web ACL with a rate-based rule per client IP and a body size rule.

    A REST API rather than an HTTP API: WAF web ACLs cannot be associated with HTTP APIs (only
    REST API stages, load balancers, AppSync, Cognito ...), and a web ACL on the API is wanted.
    Its Cognito user pool authorizer is the alternative to API keys (template parameter AuthMode).
    """

    name: str
    purpose: str
    function: str
    # the app's own limits (cart_aws/limits.py): the stage's throttling, the WAF rules (requests
    # per IP, body size) and the function's environment state the same numbers
    limits: ApiLimits = API_LIMITS
    # the CORS origins, a template parameter passed to the function (CART_CORS_ALLOW_ORIGINS)
    cors_parameter: str = "CorsAllowOrigins"


@dataclass(frozen=True)
class ApiKeysSecret:
    """The API's keys, generated by Secrets Manager as ``{"<client>": "<key>"}`` (the shape of
    CART_API_KEYS) and handed to the functions in ``env_var``: never written in the template."""

    name: str
    purpose: str
    functions: tuple[str, ...]
    env_var: str = "CART_API_KEYS"
    client: str = "default"
    key_length: int = 40


@dataclass(frozen=True)
class UserPool:
    """A Cognito user pool with an app client for machine clients (client credentials), whose
    tokens the API's authorizer verifies when AuthMode is cognito."""

    name: str
    purpose: str
    api: str
    # tells the API function which of the two the stack chose (template parameter AuthMode)
    env_var: str = "CART_AUTH_MODE"


@dataclass(frozen=True)
class MetricAlarm:
    """A CloudWatch alarm on a function's or the API's metric (sum per period), notifying a topic."""

    name: str
    purpose: str
    target_kind: Literal["function", "api"]
    target: str
    metric: str  # AWS/Lambda Errors, Throttles ...; AWS/ApiGateway 5XXError
    topic: str
    threshold: int = 1
    period_seconds: int = 300
    evaluation_periods: int = 1


@dataclass(frozen=True)
class LogArchive:
    """Every log event of the functions, copied to the lake bucket under ``prefix``.

    CloudWatch Logs subscription filters feed a Kinesis Data Firehose delivery stream writing to
    S3: the standard continuous pattern. A scheduled CreateExportTask was the alternative, but an
    account runs one export task at a time, it needs a scheduler and a function of its own, and
    events arrive in S3 a schedule late instead of within the buffering interval.
    """

    name: str
    purpose: str
    bucket: str
    prefix: str = "logs/"
    functions: tuple[str, ...] = ()
    buffer_seconds: int = 300


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
    # only in the CloudFormation template (the local system runs the API and the worker itself)
    functions: tuple[Function, ...] = ()
    queue_triggers: tuple[QueueTrigger, ...] = ()
    apis: tuple[Api, ...] = ()
    secrets: tuple[ApiKeysSecret, ...] = ()
    user_pools: tuple[UserPool, ...] = ()
    metric_alarms: tuple[MetricAlarm, ...] = ()
    log_archives: tuple[LogArchive, ...] = ()


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
                deletion_protection=True,  # the one table holding what cannot be rebuilt
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
        buckets=(
            Bucket(
                s.lake_bucket,
                "The lake: bronze, silver and gold layers; the file drop's landing/; the functions' logs/",
                lifecycle=(
                    # bronze is read again only to rebuild silver and gold (a backfill): infrequent
                    # access after a month; Standard-IA's minimum is 30 days
                    LifecycleRule("bronze-infrequent-access", "bronze/", 30, "STANDARD_IA"),
                    # archived logs are read only when investigating: Glacier, gone after a year
                    LifecycleRule("logs-archive", "logs/", 30, "GLACIER", expiration_days=365),
                ),
            ),
        ),
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
        functions=(
            Function(
                API_FUNCTION,
                "The ingest API (FastAPI through Mangum) behind the REST API",
                handler="cart_api.lambda_handler.api_handler",
                code_key_parameter="ApiCodeKey",
                environment={
                    "CART_PURCHASES_TOPIC": NameOf("topic", s.purchases_topic),
                    "CART_PURCHASES_TABLE": NameOf("table", s.purchases_table),
                    "CART_IDEMPOTENCY_TABLE": NameOf("table", s.idempotency_table),
                },
                access=(
                    # publish (Publish covers PublishBatch); readiness reads the topic's attributes
                    Access("topic", s.purchases_topic, ("sns:Publish", "sns:GetTopicAttributes")),
                    # GET /purchases/{id}; readiness describes the table
                    Access("table", s.purchases_table, ("dynamodb:GetItem", "dynamodb:DescribeTable")),
                    Access(
                        "table", s.idempotency_table, ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem")
                    ),
                ),
                timeout_seconds=15,  # under API Gateway's 29 s integration timeout
            ),
            Function(
                WORKER_FUNCTION,
                "Stores the queued purchases in DynamoDB; forwards what cannot be stored to the DLQ",
                handler="cart_api.lambda_handler.worker_handler",
                code_key_parameter="WorkerCodeKey",
                environment={
                    "CART_PURCHASES_QUEUE": NameOf("queue", s.purchases_queue),
                    "CART_PURCHASES_DLQ": NameOf("queue", s.purchases_dlq),
                    "CART_PURCHASES_TABLE": NameOf("table", s.purchases_table),
                    "CART_MAX_RECEIVE_COUNT": str(s.max_receive_count),
                    "CART_INGEST_SHARDS": str(s.ingest_shards),
                },
                access=(
                    Access("table", s.purchases_table, ("dynamodb:BatchWriteItem",)),
                    # the worker looks the DLQ's URL up, then sends (SendMessageBatch is SendMessage)
                    Access("queue", s.purchases_dlq, ("sqs:GetQueueUrl", "sqs:SendMessage")),
                ),
                metrics_namespace=NAMESPACE,
                # the queue's visibility timeout must be at least the function's (Lambda refuses
                # the event source mapping otherwise)
                timeout_seconds=min(20, s.visibility_timeout),
            ),
        ),
        queue_triggers=(QueueTrigger(WORKER_FUNCTION, s.purchases_queue),),
        apis=(Api(API_FUNCTION, "The ingest API: every path proxied to the API function", function=API_FUNCTION),),
        secrets=(
            ApiKeysSecret(
                "cart-api-keys",
                "Keys of the API's clients (AuthMode api-key), as CART_API_KEYS",
                # the worker too, though it serves no request: cart_api's Settings, which both
                # functions read, refuse to start on AWS while CART_API_KEYS is the local key
                functions=(API_FUNCTION, WORKER_FUNCTION),
            ),
        ),
        user_pools=(UserPool("cart-api-clients", "Clients of the API when AuthMode is cognito", api=API_FUNCTION),),
        metric_alarms=(
            MetricAlarm(
                "cart-api-5xx",
                "The API answered 5xx (SNS or DynamoDB failing)",
                "api",
                API_FUNCTION,
                "5XXError",
                s.alerts_topic,
            ),
            MetricAlarm(
                "cart-worker-errors",
                "The worker function failed (whole batches retried)",
                "function",
                WORKER_FUNCTION,
                "Errors",
                s.alerts_topic,
            ),
            MetricAlarm(
                "cart-api-throttles",
                "Lambda throttled the API function (account or reserved concurrency)",
                "function",
                API_FUNCTION,
                "Throttles",
                s.alerts_topic,
            ),
            MetricAlarm(
                "cart-worker-throttles",
                "Lambda throttled the worker function (the queue backs up)",
                "function",
                WORKER_FUNCTION,
                "Throttles",
                s.alerts_topic,
            ),
        ),
        log_archives=(
            LogArchive(
                "cart-logs",
                "The functions' logs, archived in the lake bucket",
                bucket=s.lake_bucket,
                functions=(API_FUNCTION, WORKER_FUNCTION),
            ),
        ),
    )


class Arns(Protocol):
    """How a described resource's ARN is written: a string for provisioning (from the account and
    region), an intrinsic function in the template (``cart_aws.template``)."""

    def topic(self, name: str) -> Any: ...

    def queue(self, name: str) -> Any: ...

    def bucket(self, name: str) -> Any: ...

    @property
    def account_id(self) -> Any: ...

    def queue_name(self, name: str) -> Any: ...


def queue_policy_statements(queue: Queue, stack: Stack, arns: Arns) -> list[dict[str, Any]]:
    """Who may send to a queue: the topics it is subscribed to (real SQS refuses their deliveries
    without this) and the buckets notifying it, which must also be this account's."""
    statements: list[dict[str, Any]] = []
    publishers = [arns.topic(s.topic) for s in stack.subscriptions if s.queue == queue.name]
    if publishers:
        statements.append(
            {
                "Sid": "AllowSubscribedTopics",
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": arns.queue(queue.name),
                "Condition": {"ArnEquals": {"aws:SourceArn": publishers}},
            }
        )
    buckets = sorted({n.bucket for n in stack.notifications if n.queue == queue.name})
    if buckets:
        statements.append(
            {
                "Sid": "AllowBucketNotifications",
                "Effect": "Allow",
                "Principal": {"Service": "s3.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": arns.queue(queue.name),
                "Condition": {
                    "ArnLike": {"aws:SourceArn": [arns.bucket(b) for b in buckets]},
                    "StringEquals": {"aws:SourceAccount": arns.account_id},
                },
            }
        )
    return statements


def queue_depth_alarm(alarm: QueueDepthAlarm, arns: Arns) -> dict[str, Any]:
    """The alarm as PutMetricAlarm and CloudFormation's AWS::CloudWatch::Alarm both take it."""
    topic = arns.topic(alarm.topic)
    return {
        "AlarmName": alarm.name,
        "AlarmDescription": alarm.purpose,
        "Namespace": "AWS/SQS",
        "MetricName": "ApproximateNumberOfMessagesVisible",
        "Dimensions": [{"Name": "QueueName", "Value": arns.queue_name(alarm.queue)}],
        "Statistic": "Maximum",
        "Period": alarm.period_seconds,
        "EvaluationPeriods": alarm.evaluation_periods,
        "Threshold": float(alarm.threshold),
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "TreatMissingData": "notBreaching",
        "AlarmActions": [topic],
        "OKActions": [topic],
    }
