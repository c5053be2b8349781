"""boto3 clients built from settings, and the names of resources resolved to ARNs and URLs."""

from __future__ import annotations

import os
import threading
from functools import cached_property
from typing import TYPE_CHECKING, Any

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
        self._lock = threading.Lock()
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
        kwargs: dict[str, Any] = {"region_name": self.settings.aws_region}
        if self.settings.is_emulated and not os.environ.get("AWS_ACCESS_KEY_ID"):
            kwargs.update(aws_access_key_id="testing", aws_secret_access_key="testing")
        return boto3.session.Session(**kwargs)

    def client(self, service: str) -> Any:
        with self._lock:  # boto3 client creation is not thread-safe; the clients are
            return self.session.client(
                service,  # type: ignore[call-overload]
                endpoint_url=self.settings.aws_endpoint_url,
                config=self._config,
            )

    @cached_property
    def sns(self) -> SNSClient:
        return self.client("sns")  # type: ignore[no-any-return]

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
