"""Settings of the ingest service (API and worker), read from ``CART_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, model_validator

from cart_aws.settings import AwsSettings

LOCAL_DEV_KEYS = {"local": "local-dev-key"}


class Settings(AwsSettings):
    """AWS settings plus what the API and the worker need."""

    api_keys: dict[str, str] = Field(
        default=LOCAL_DEV_KEYS,
        description="API clients as a JSON object {client name: key}. Required on real AWS.",
    )
    auth_mode: Literal["api-key", "cognito"] = Field(
        default="api-key",
        description=(
            "How API clients authenticate: api-key (X-API-Key, CART_API_KEYS) or cognito (on AWS behind API "
            "Gateway's Cognito authorizer, which has verified the access token; the client is its client_id)."
        ),
    )
    max_body_bytes: int = Field(default=16_384, ge=1_024, description="Largest request body accepted (413 above).")
    publish_batch_size: int = Field(
        default=10, ge=1, le=10, description="Purchases per SNS PublishBatch call; 1 = one Publish per request."
    )
    publish_max_in_flight: int = Field(default=8, ge=1, le=64, description="Concurrent SNS calls per API process.")
    idempotency_ttl_seconds: int = Field(
        default=86_400, ge=60, description="How long an Idempotency-Key is remembered."
    )
    idempotency_lock_seconds: int = Field(
        default=30, ge=1, description="After this, a request that claimed a key but never finished may be retried."
    )
    rate_limit_per_second: float = Field(
        default=500.0, ge=0, description="Requests per second allowed per API key (0: no limit); 429 above."
    )
    rate_limit_burst: int = Field(default=1000, ge=1, description="Requests a client may send at once above its rate.")
    worker_batch_size: int = Field(default=10, ge=1, le=10, description="Messages the worker receives per call.")
    # 4: at 150 purchases/s through the API on the local moto server, 2 threads let ~1,000 queue up
    # (8 s behind) and 4 stay under 100 (docs/benchmarks.md, local ingest); idle, each long poll
    # wakes moto once a second
    worker_concurrency: int = Field(default=4, ge=1, le=32, description="Polling threads of the local worker.")
    worker_wait_seconds: int = Field(default=5, ge=0, le=20, description="Long-poll wait of the local worker.")
    worker_write_attempts: int = Field(default=5, ge=1, description="BatchWriteItem attempts for unprocessed items.")

    @model_validator(mode="after")
    def _no_dev_keys_on_real_aws(self) -> Settings:
        if not self.is_emulated and set(self.api_keys.values()) & set(LOCAL_DEV_KEYS.values()):
            raise ValueError(
                "CART_API_KEYS still holds the local development key while CART_AWS_ENDPOINT_URL "
                "points at real AWS; set CART_API_KEYS to the production keys."
            )
        if not self.api_keys:
            raise ValueError("CART_API_KEYS is empty: no client could call the API")
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
