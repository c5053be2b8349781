"""The API's connections to AWS, built lazily from settings (nothing is contacted at import
or at app creation), and what the routes need from them."""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import Any, Protocol

from cart_api.idempotency import DynamoIdempotencyStore, IdempotencyStore
from cart_api.keys import ApiKeyRing
from cart_api.publisher import Publisher, SnsPublisher
from cart_api.ratelimit import TokenBucketLimiter
from cart_api.settings import Settings
from cart_api.store import get_purchase
from cart_aws.aws import AwsClients


class PurchaseLookup(Protocol):
    def __call__(self, purchase_id: str) -> dict[str, Any] | None: ...


class ReadinessProbe(Protocol):
    def __call__(self) -> dict[str, str]: ...


class Backend:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.aws = AwsClients(settings, max_pool_connections=settings.publish_max_in_flight + 16)

    @cached_property
    def publisher(self) -> Publisher:
        return SnsPublisher(
            self.aws.sns_publishing,
            lambda: self.aws.topic_arn(self.settings.purchases_topic),
            batch_size=self.settings.publish_batch_size,
            max_in_flight=self.settings.publish_max_in_flight,
        )

    @cached_property
    def idempotency(self) -> IdempotencyStore:
        return DynamoIdempotencyStore(
            self.aws.dynamodb,
            self.settings.idempotency_table,
            ttl_seconds=self.settings.idempotency_ttl_seconds,
            lock_seconds=self.settings.idempotency_lock_seconds,
        )

    @cached_property
    def api_keys(self) -> ApiKeyRing:
        return ApiKeyRing(self.settings.api_keys)

    @cached_property
    def limiter(self) -> TokenBucketLimiter | None:
        if not self.settings.rate_limit_per_second:
            return None
        return TokenBucketLimiter(self.settings.rate_limit_per_second, self.settings.rate_limit_burst)

    def prepare(self) -> None:
        """Build the services every purchase uses (the publisher with its SNS client, the key
        ring) now, at startup, instead of in the first request; contacts nothing. A service a
        test has already assigned is kept."""
        self.publisher  # noqa: B018 - cached_property: building it is the point
        self.api_keys  # noqa: B018

    def lookup(self, purchase_id: str) -> dict[str, Any] | None:
        return get_purchase(self.aws.dynamodb, self.settings.purchases_table, purchase_id)

    def readiness(self) -> dict[str, str]:
        """Ask SNS and DynamoDB whether they answer; 'ok' or the error, per dependency."""
        checks: dict[str, str] = {}
        probes: dict[str, Callable[[], object]] = {
            "sns": lambda: self.aws.sns.get_topic_attributes(
                TopicArn=self.aws.topic_arn(self.settings.purchases_topic)
            ),
            "dynamodb": lambda: self.aws.dynamodb.describe_table(TableName=self.settings.purchases_table),
        }
        for name, probe in probes.items():
            try:
                probe()
                checks[name] = "ok"
            except Exception as exc:  # noqa: BLE001 - any failure means not ready
                checks[name] = f"{type(exc).__name__}: {exc}"
        return checks

    def close(self) -> None:
        if "publisher" in self.__dict__:
            self.publisher.close()
