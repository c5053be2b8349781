"""Settings of the lakehouse, read from ``CART_*`` environment variables (one place, lazily).

Locally the lake is a folder and the AWS endpoint the moto server; in production the lake root is
``s3://bucket/prefix`` and the endpoint empty. Nothing else changes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator

from cart_aws.settings import AwsSettings


def default_partitions_start() -> str:
    """Seven days before today (UTC midnight): enough history locally, few partitions in the UI."""
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=7)
    return day.strftime("%Y-%m-%d-%H:%M")


class LakeSettings(AwsSettings):
    """AWS settings plus where the lake is and how the lakehouse runs."""

    lake_root: str = Field(
        default=".local/lake",
        description="Root of the lake: a local folder, or s3://bucket/prefix in production.",
    )
    partitions_start: str = Field(
        default_factory=default_partitions_start,
        description="First hourly partition (yyyy-MM-dd-HH:mm, UTC); default: 7 days before today.",
    )
    spark_master: str = Field(default="local[2]", description="Spark master (local[2], local-cluster[...], yarn...).")
    spark_shuffle_partitions: int = Field(default=4, ge=1, description="spark.sql.shuffle.partitions for silver.")
    dbt_project_dir: str = Field(default="dbt_project", description="The dbt project building gold.")
    hour_closed_grace_seconds: float = Field(
        default=60.0,
        ge=0,
        le=180,
        description=(
            "Seconds after an hour closes that the hour_closed sensor waits for the purchases queue to empty "
            "before it launches the hour anyway (at most 180: the HH:05 schedule takes over)."
        ),
    )
    filedrop_max_file_bytes: int = Field(
        default=512 * 1024 * 1024,
        ge=1,
        description="Largest landed file the file drop reads; a larger one rejects its set unread.",
    )
    filedrop_set_wait_seconds: float = Field(
        default=900.0,
        ge=0,
        description=(
            "Seconds landed files may wait for the rest of their set (an order item's order or product) "
            "before the incomplete set is reported; it can then be forced through from the UI."
        ),
    )
    mart_freshness_hours: float = Field(
        default=2.0,
        gt=0,
        description=(
            "Hours a mart may be behind silver (newest materialized hour of each) before its fresh_vs_silver "
            "check warns and the mart_freshness sensor alerts."
        ),
    )
    dagster_ui_url: str = Field(default="http://127.0.0.1:3000", description="Dagster UI address used in links.")

    @field_validator("lake_root")
    @classmethod
    def _absolute_local_root(cls, value: str) -> str:
        if "://" in value:
            return value.rstrip("/")
        return str(Path(value).expanduser().resolve())

    @field_validator("partitions_start")
    @classmethod
    def _valid_start(cls, value: str) -> str:
        try:
            datetime.strptime(value, "%Y-%m-%d-%H:%M")
        except ValueError as exc:
            raise ValueError(f"CART_PARTITIONS_START must look like 2026-11-01-00:00, got {value!r}") from exc
        return value


@lru_cache(maxsize=1)
def lake_settings() -> LakeSettings:
    return LakeSettings()
