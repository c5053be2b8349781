"""Settings of the ingest service (API and worker), read from ``CART_*`` environment variables."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from cart_aws.limits import API_LIMITS
from cart_aws.settings import AwsSettings

LOCAL_DEV_KEYS = {"local": "local-dev-key"}


class Settings(AwsSettings):
    """AWS settings plus what the API and the worker need."""

    # a settings error quotes no input: the input holds CART_API_KEYS
    model_config = SettingsConfigDict(hide_input_in_errors=True)

    # SecretStr: the keys show as '**********' in the settings' repr, str and model_dump
    api_keys: dict[str, SecretStr] = Field(
        default=LOCAL_DEV_KEYS,
        validate_default=True,
        description="API clients as a JSON object {client name: key}. Required on real AWS.",
    )
    auth_mode: Literal["api-key", "cognito"] = Field(
        default="api-key",
        description=(
            "How API clients authenticate: api-key (X-API-Key, CART_API_KEYS) or cognito (on AWS behind API "
            "Gateway's Cognito authorizer, which has verified the access token; the client is its client_id)."
        ),
    )
    max_body_bytes: int = Field(
        default=API_LIMITS.max_body_bytes, ge=1_024, description="Largest request body accepted (413 above)."
    )
    cors_allow_origins: Annotated[list[str], NoDecode] = Field(
        default=[],
        description=(
            "Origins a browser may call the API from (CORS), comma-separated, e.g. https://shop.example; "
            "empty: none, no CORS headers (a server-to-server API)."
        ),
    )
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
        default=API_LIMITS.rate_per_second,
        ge=0,
        description="Requests per second allowed per API key (0: no limit); 429 above.",
    )
    rate_limit_burst: int = Field(
        default=API_LIMITS.burst, ge=1, description="Requests a client may send at once above its rate."
    )
    worker_batch_size: int = Field(default=10, ge=1, le=10, description="Messages the worker receives per call.")
    # 4: at 150 purchases/s through the API on the local moto server, 2 threads let ~1,000 queue up
    # (8 s behind) and 4 stay under 100 (docs/benchmarks.md, local ingest); idle, each long poll
    # wakes moto once a second
    worker_concurrency: int = Field(default=4, ge=1, le=32, description="Polling threads of the local worker.")
    worker_wait_seconds: int = Field(default=5, ge=0, le=20, description="Long-poll wait of the local worker.")
    worker_write_attempts: int = Field(default=5, ge=1, description="BatchWriteItem attempts for unprocessed items.")

    @field_validator("cors_allow_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        # the environment gives "https://a.example,https://b.example", as the template's parameter
        # does, or a JSON list as pydantic-settings takes any other list ('[]' is none, not an origin)
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @model_validator(mode="after")
    def _no_dev_keys_on_real_aws(self) -> Settings:
        keys = {key.get_secret_value() for key in self.api_keys.values()}
        if not self.is_emulated and keys & set(LOCAL_DEV_KEYS.values()):
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
