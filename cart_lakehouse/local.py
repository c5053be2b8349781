"""Real Dagster runs of the lakehouse in this process: the resources for a local lake and the
moto server, and one run for an hour or a window of hours. Used by the demo, the fault tests
and the benchmark, where a run launched by a Dagster daemon would add a process (and a Spark
session) per run."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Any

from dagster import AssetCheckSeverity, AssetSelection, ExecuteInProcessResult, materialize
from dagster_dbt import DbtCliResource

from cart_aws.settings import AwsSettings
from cart_lakehouse.definitions import ASSETS, CHECKS
from cart_lakehouse.gold_project import GOLD_PROJECT
from cart_lakehouse.partitions import Hour
from cart_lakehouse.resources import (
    AwsResource,
    CatalogResource,
    LakeResource,
    SilverRunnerResource,
    SparkResource,
    spark_config,
)
from cart_lakehouse.settings import LakeSettings

HOURLY_GROUPS = ("bronze", "silver", "gold", "star", "marts")


def local_resources(settings: AwsSettings, lake_root: str, spark: LakeSettings | None = None) -> dict[str, Any]:
    """The resources of the definitions, pointed at ``settings``' AWS endpoint and ``lake_root``."""
    endpoint, region = settings.aws_endpoint_url, settings.aws_region
    spark_settings = spark or LakeSettings(spark_master="local[2]", spark_shuffle_partitions=2)
    return {
        "aws": AwsResource(aws_endpoint_url=endpoint, aws_region=region),
        "lake": LakeResource(root=lake_root, aws_endpoint_url=endpoint, aws_region=region),
        "catalog": CatalogResource(database=settings.glue_database, aws_endpoint_url=endpoint, aws_region=region),
        "pyspark": SparkResource(spark_config=spark_config(spark_settings)),
        "silver_runner": SilverRunnerResource(),  # in-process
        "dbt": DbtCliResource(project_dir=str(GOLD_PROJECT.project_dir)),
    }


def window_tags(hours: Sequence[Hour]) -> dict[str, str]:
    """Run tags of a single run over consecutive hours (the assets' single-run backfill policy)."""
    return {"dagster/asset_partition_range_start": hours[0].key, "dagster/asset_partition_range_end": hours[-1].key}


def materialize_hours(
    resources: dict[str, Any],
    hours: Sequence[Hour] | None,
    groups: Sequence[str] = HOURLY_GROUPS,
    *,
    quiet: bool = True,
    tags: dict[str, str] | None = None,
    raise_on_error: bool = True,
) -> ExecuteInProcessResult:
    """One run of the groups' assets and checks for an hour, a window of consecutive hours, or
    unpartitioned assets (``hours`` None). With ``raise_on_error``, a failed run or a failed ERROR
    check raises ``RuntimeError`` naming what failed (a failed WARN check does not)."""
    run_tags = dict(tags or {})
    partition_key = None
    if hours and len(hours) == 1:
        partition_key = hours[0].key
    elif hours:
        run_tags.update(window_tags(hours))
    definitions: list[Any] = [*ASSETS, *CHECKS]
    # dagster-dbt re-emits dbt's log on stdout (a launched run keeps it as the step's compute log);
    # quiet runs keep it aside and show its end only if the run fails
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured) if quiet else contextlib.nullcontext():
        result = materialize(
            definitions,
            selection=AssetSelection.groups(*groups),
            resources=resources,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}} if quiet else None,
            partition_key=partition_key,
            tags=run_tags,
            raise_on_error=False,
        )
    # a failed WARN check (bronze/purchases:source_not_shrunk) is reported and alerted, not a failure
    failed = [
        f"{e.asset_key.to_user_string()}:{e.check_name}"
        for e in result.get_asset_check_evaluations()
        if not e.passed and e.severity == AssetCheckSeverity.ERROR
    ]
    if raise_on_error and (not result.success or failed):
        window = ", ".join(h.key for h in hours) if hours else "unpartitioned"
        tail = "\n".join(captured.getvalue().splitlines()[-30:])
        raise RuntimeError(
            f"the run of {'/'.join(groups)} for {window} failed; failed checks: {failed or 'none'}"
            + (f"\nlast lines of its output:\n{tail}" if tail else "")
        )
    return result
