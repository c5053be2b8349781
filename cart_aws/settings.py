"""The one place configuration is read: environment variables prefixed ``CART_``.

Defaults describe the embedded local system (a moto server on loopback, a local lake folder);
production differs only in these values (no endpoint override, real bucket, ``s3://`` lake root).
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOCAL_ENDPOINT = "http://127.0.0.1:4566"


class AwsSettings(BaseSettings):
    """Where AWS is and what the system's resources are called."""

    model_config = SettingsConfigDict(env_prefix="CART_", env_file=".env", extra="ignore")

    aws_endpoint_url: str | None = Field(
        default=LOCAL_ENDPOINT,
        description="AWS endpoint override (the local moto server). Empty on real AWS.",
    )
    aws_region: str = Field(default="us-east-1", description="AWS region of every resource.")
    purchases_topic: str = Field(default="cart-purchases", description="SNS topic the API publishes to.")
    purchases_queue: str = Field(default="cart-purchases", description="SQS queue the worker consumes.")
    purchases_dlq: str = Field(default="cart-purchases-dlq", description="Dead-letter queue of the purchases queue.")
    max_receive_count: int = Field(
        default=3, ge=1, le=1000, description="Receives before SQS moves a message to the DLQ."
    )
    visibility_timeout: int = Field(default=30, ge=0, le=43200, description="Seconds a received message stays hidden.")
    purchases_table: str = Field(default="cart-purchases", description="DynamoDB table of stored purchases.")
    ingest_hour_index: str = Field(
        default="by-ingest-hour", description="GSI on the ingest hour, sharded (key ingest_shard, received_at)."
    )
    # 16 partition keys x ~1,000 writes/s each: 10,000 purchases/s with 60 % headroom (docs/benchmarks.md)
    ingest_shards: int = Field(
        default=16,
        ge=1,
        le=256,
        description="Shards of an hour in the ingest-hour index (writes/s of an hour: about 1,000 per shard).",
    )
    ingest_read_shards: int = Field(
        default=0,
        ge=0,
        le=256,
        description=(
            "Shards readers query per hour, if more than CART_INGEST_SHARDS: after lowering that, "
            "the largest count hours still read were written with (0: CART_INGEST_SHARDS)."
        ),
    )
    idempotency_table: str = Field(default="cart-idempotency", description="DynamoDB table of API idempotency keys.")
    lake_bucket: str = Field(default="cart-lake", description="S3 bucket of the lake.")
    alerts_topic: str = Field(default="cart-alerts", description="SNS topic for operational alerts.")
    glue_database: str = Field(default="cart_lakehouse", description="Glue Data Catalog database of the lake's tables.")
    landing_queue: str = Field(
        default="cart-landing", description="SQS queue of the lake bucket's landing/ events (the file drop)."
    )
    landing_dlq: str = Field(default="cart-landing-dlq", description="Dead-letter queue of the landing queue.")
    filedrop_topic: str = Field(
        default="cart-filedrop", description="SNS topic told about every file set processed or rejected."
    )
    category_kpis_table: str = Field(
        default="cart-category-kpis", description="DynamoDB table of the category KPIs (category, order_date)."
    )
    order_kpis_table: str = Field(
        default="cart-order-kpis", description="DynamoDB table of the order KPIs (order_date)."
    )

    @field_validator("aws_endpoint_url", mode="before")
    @classmethod
    def _empty_means_real_aws(cls, value: object) -> object:
        return None if value in ("", None) else value

    @property
    def index_read_shards(self) -> int:
        """Shards readers query per hour: never fewer than new hours are written with, so a raised
        CART_INGEST_SHARDS needs nothing else; a lowered one needs CART_INGEST_READ_SHARDS kept at
        the old count while hours written under it are read (a shard not queried is not seen)."""
        return max(self.ingest_shards, self.ingest_read_shards)

    @property
    def is_emulated(self) -> bool:
        """True when the endpoint is an emulator (moto), which accepts any credentials."""
        return self.aws_endpoint_url is not None


@lru_cache(maxsize=1)
def aws_settings() -> AwsSettings:
    return AwsSettings()
