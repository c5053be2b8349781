"""Settings of the lakehouse, read from ``CART_*`` environment variables (one place, lazily).

Locally the lake is a folder and the AWS endpoint the moto server; in production the lake root is
``s3://bucket/prefix`` and the endpoint empty. Nothing else changes.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, field_validator, model_validator

from cart_aws.settings import AwsSettings


def default_partitions_start() -> str:
    """Seven days before today (UTC midnight): enough history locally, few partitions in the UI."""
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=7)
    return day.strftime("%Y-%m-%d-%H:%M")


# a JVM option that selects the garbage collector (-XX:+UseG1GC, -XX:+UseParallelGC, ...)
_COLLECTOR = re.compile(r"-XX:\+Use\w*GC\b")


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
    spark_remote: str = Field(
        default="",
        pattern=r"^(sc://\S+)?$",
        description=(
            "Spark Connect URL (sc://host:port) of a long-lived Spark server that silver's runs attach to, "
            "so that no run pays a JVM's start and warm-up (make run starts one); empty: each run starts "
            "its own Spark (spark_master) in its process."
        ),
    )
    spark_java_options: str = Field(
        default="-XX:+UseParallelGC",
        description=(
            "JVM options of the Spark driver the project starts (a run's own or the Spark Connect server); "
            "the throughput collector made silver's warm runs 20-30% faster than the JVM's default G1. A collector "
            "also chosen in `JAVA_TOOL_OPTIONS` or `JDK_JAVA_OPTIONS` is refused at startup, naming both (the JVM "
            "would not start with two)."
        ),
    )
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
    silver_runner: Literal["in-process", "emr-serverless"] = Field(
        default="in-process",
        description=(
            "Where silver's Spark job runs: in-process (the run's own Spark session) or emr-serverless "
            "(a job run on EMR Serverless through Dagster Pipes; needs the CART_EMR_* settings)."
        ),
    )
    emr_application_id: str | None = Field(default=None, description="EMR Serverless application that runs silver.")
    emr_execution_role_arn: str | None = Field(
        default=None, description="IAM role silver's EMR Serverless job runs as (reads bronze, writes silver)."
    )
    emr_entry_point: str | None = Field(
        default=None,
        description="S3 URI of cart_lakehouse/jobs/silver_entry.py, the script EMR Serverless runs with spark-submit.",
    )
    emr_logs_uri: str | None = Field(
        default=None, description="S3 URI where EMR Serverless keeps the job's driver and executor logs."
    )
    emr_pipes_bucket: str | None = Field(
        default=None, description="S3 bucket of the Pipes context and messages of EMR jobs (unset: CART_LAKE_BUCKET)."
    )

    @field_validator("lake_root")
    @classmethod
    def _absolute_local_root(cls, value: str) -> str:
        if "://" in value:
            return value.rstrip("/")
        return str(Path(value).expanduser().resolve())

    @model_validator(mode="after")
    def _one_garbage_collector(self) -> Self:
        """The JVM applies JAVA_TOOL_OPTIONS and JDK_JAVA_OPTIONS too, and refuses to start with two
        collectors ("Multiple garbage collectors selected"): say so here, naming both, instead."""
        ours = _COLLECTOR.findall(self.spark_java_options)
        for name in ("JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS"):
            theirs = _COLLECTOR.findall(os.environ.get(name, ""))
            if ours and theirs and set(ours) != set(theirs):
                raise ValueError(
                    f"{name} selects the garbage collector {theirs[0]} and CART_SPARK_JAVA_OPTIONS selects "
                    f"{ours[0]} (default: -XX:+UseParallelGC): Spark's JVM would refuse to start with two. "
                    f"Set CART_SPARK_JAVA_OPTIONS without a collector (e.g. empty) to keep {name}'s, "
                    f"or drop it from {name}."
                )
        return self

    @model_validator(mode="after")
    def _emr_is_configured(self) -> Self:
        if self.silver_runner != "emr-serverless":
            return self
        missing = [
            f"CART_{name.upper()}"
            for name in ("emr_application_id", "emr_execution_role_arn", "emr_entry_point", "emr_logs_uri")
            if not getattr(self, name)
        ]
        if missing:
            raise ValueError(f"CART_SILVER_RUNNER=emr-serverless needs {', '.join(missing)}")
        not_s3 = [
            f"CART_{name.upper()}"
            for name in ("emr_entry_point", "emr_logs_uri")
            if getattr(self, name) and not str(getattr(self, name)).startswith("s3://")
        ]
        if not_s3:
            raise ValueError(f"{', '.join(not_s3)} must be s3:// URIs (EMR Serverless reads them from S3)")
        return self

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
