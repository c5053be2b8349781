"""boto3 clients built from settings, and the names of resources resolved to ARNs and URLs."""

from __future__ import annotations

import os
import threading
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import boto3
from botocore.config import Config

from cart_aws.settings import AwsSettings

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_glue import GlueClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient


# boto3 sessions shared by every AwsClients of the process, one per (region, credentials source):
# a session caches the service models and endpoint rules its clients are built from, which a new
# session reads and parses again from botocore's JSON files (about 0.1 s per client, most of the
# cost of a set of clients). Creating a client from a session is not thread-safe, hence one lock.
_SESSIONS: dict[tuple[str, bool], boto3.session.Session] = {}
_SESSIONS_LOCK = threading.Lock()


def encode_body_once(request: Any, **_: Any) -> None:
    """A ``before-sign`` handler for a query-protocol client (SNS): the body, a dict of
    parameters, url-encoded once into the bytes sent, exactly as botocore's request preparer
    encodes it (``urlencode`` of the UTF-8 items, ``doseq``).

    botocore keeps a query request's body as a dict and url-encodes it each time it is read: for
    the SigV4 payload hash, then again to send it. For a PublishBatch of 10 purchases (~80
    parameters) that quoting was a third of botocore's CPU per call (docs/benchmarks.md). The
    signer and the sender then read the same bytes, so what is signed is what is sent. Only for
    clients that sign requests (never presign: a presigned query request reads its dict body).
    """
    data = request.data
    if isinstance(data, dict):
        items = [
            (k.encode() if isinstance(k, str) else k, v.encode() if isinstance(v, str) else v) for k, v in data.items()
        ]
        request.data = urlencode(items, doseq=True).encode()


def shared_session(region: str, dummy_credentials: bool) -> boto3.session.Session:
    """The process's boto3 session for ``region``; with ``dummy_credentials``, one that signs with
    fixed dummy keys (for an emulator), otherwise one with boto3's default credential chain."""
    with _SESSIONS_LOCK:
        key = (region, dummy_credentials)
        if key not in _SESSIONS:
            kwargs: dict[str, Any] = {"region_name": region}
            if dummy_credentials:
                kwargs.update(aws_access_key_id="testing", aws_secret_access_key="testing")
            _SESSIONS[key] = boto3.session.Session(**kwargs)
        return _SESSIONS[key]


class AwsClients:
    """Lazily built, thread-safe boto3 clients for one settings object.

    Against an emulator (an endpoint override) and without credentials in the environment,
    boto3 is given dummy ones: moto accepts any, and nothing real can be reached with them.
    """

    def __init__(
        self,
        settings: AwsSettings,
        *,
        max_pool_connections: int = 32,
        attempts: int = 4,
        read_timeout: float = 30,
        connect_timeout: float = 3,
    ) -> None:
        self.settings = settings
        self._account: str | None = None
        self._config = Config(
            region_name=settings.aws_region,
            max_pool_connections=max_pool_connections,
            retries={"total_max_attempts": attempts, "mode": "standard"},  # 1: no retries
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,  # 30 s default: above the 20 s SQS long poll
        )

    @cached_property
    def session(self) -> boto3.session.Session:
        dummy = self.settings.is_emulated and not os.environ.get("AWS_ACCESS_KEY_ID")
        return shared_session(self.settings.aws_region, dummy)

    def client(self, service: str, *, validate_parameters: bool = True) -> Any:
        session = self.session
        config = self._config if validate_parameters else self._config.merge(Config(parameter_validation=False))
        with _SESSIONS_LOCK:  # boto3 client creation is not thread-safe; the clients are
            return session.client(
                service,  # type: ignore[call-overload]
                endpoint_url=self.settings.aws_endpoint_url,
                config=config,
            )

    @cached_property
    def sns(self) -> SNSClient:
        return self.client("sns")  # type: ignore[no-any-return]

    @cached_property
    def sns_publishing(self) -> SNSClient:
        """The SNS client of the API's publishing hot path, for Publish and PublishBatch only.

        Its parameters are not validated by botocore (a tenth of its CPU per PublishBatch): the
        messages are built from a request the purchases contract validated, and a call SNS
        refuses still fails with a ClientError. Its query body is url-encoded once
        (``encode_body_once``) instead of twice.
        """
        sns = self.client("sns", validate_parameters=False)
        sns.meta.events.register("before-sign.sns.Publish", encode_body_once)
        sns.meta.events.register("before-sign.sns.PublishBatch", encode_body_once)
        return sns  # type: ignore[no-any-return]

    @cached_property
    def sqs(self) -> SQSClient:
        return self.client("sqs")  # type: ignore[no-any-return]

    @cached_property
    def dynamodb(self) -> DynamoDBClient:
        return self.client("dynamodb")  # type: ignore[no-any-return]

    @cached_property
    def s3(self) -> S3Client:
        return self.client("s3")  # type: ignore[no-any-return]

    @cached_property
    def glue(self) -> GlueClient:
        return self.client("glue")  # type: ignore[no-any-return]

    @cached_property
    def cloudwatch(self) -> CloudWatchClient:
        return self.client("cloudwatch")  # type: ignore[no-any-return]

    @property
    def account_id(self) -> str:
        if self._account is None:
            self._account = self.client("sts").get_caller_identity()["Account"]
        return self._account

    def topic_arn(self, name: str) -> str:
        return f"arn:aws:sns:{self.settings.aws_region}:{self.account_id}:{name}"

    def queue_arn(self, name: str) -> str:
        return f"arn:aws:sqs:{self.settings.aws_region}:{self.account_id}:{name}"

    def queue_url(self, name: str) -> str:
        return self.sqs.get_queue_url(QueueName=name)["QueueUrl"]

    def item_count(self, table: str) -> int:
        """Items in a DynamoDB table, counted by a paginated Scan (each page stops at 1 MB)."""
        paginator = self.dynamodb.get_paginator("scan")
        return sum(int(page.get("Count", 0)) for page in paginator.paginate(TableName=table, Select="COUNT"))

    def queue_depth(self, name: str) -> int:
        """Messages in a queue, visible or in flight (SQS's approximate counts)."""
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url(name),
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])
