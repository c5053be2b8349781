"""Dagster resources of the lakehouse. Local and production differ in their configuration only."""

from __future__ import annotations

from typing import Any

from dagster import ConfigurableResource
from dagster_dbt import DbtCliResource
from dagster_pyspark import LazyPySparkResource

from cart_aws.aws import AwsClients
from cart_lakehouse.catalog import GlueCatalog
from cart_lakehouse.gold_project import project_dir
from cart_lakehouse.lake import Lake
from cart_lakehouse.settings import LakeSettings, lake_settings


class AwsResource(ConfigurableResource):  # type: ignore[type-arg]
    """boto3 clients for the lakehouse (DynamoDB, S3, Glue, SQS, SNS) on the configured endpoint."""

    aws_endpoint_url: str | None = None
    aws_region: str = "us-east-1"

    def settings(self) -> LakeSettings:
        return LakeSettings(aws_endpoint_url=self.aws_endpoint_url or "", aws_region=self.aws_region)

    def clients(self) -> AwsClients:
        return AwsClients(self.settings())


class CatalogResource(ConfigurableResource):  # type: ignore[type-arg]
    """The Glue Data Catalog database the lake's tables are registered in."""

    database: str
    aws_endpoint_url: str | None = None
    aws_region: str = "us-east-1"

    def catalog(self) -> GlueCatalog:
        settings = LakeSettings(aws_endpoint_url=self.aws_endpoint_url or "", aws_region=self.aws_region)
        return GlueCatalog(AwsClients(settings).glue, self.database)


class LakeResource(ConfigurableResource):  # type: ignore[type-arg]
    """The lake root: a local folder, or ``s3://bucket/prefix`` in production."""

    root: str
    aws_endpoint_url: str | None = None
    aws_region: str = "us-east-1"

    def settings(self) -> LakeSettings:
        """The settings of the AWS the lake is on (endpoint and region from this resource)."""
        return LakeSettings(aws_endpoint_url=self.aws_endpoint_url or "", aws_region=self.aws_region)

    def lake(self) -> Lake:
        return Lake.open(self.root, self.settings())


def spark_config(settings: LakeSettings) -> dict[str, Any]:
    """One Spark session per process (the resource creates it on first use, then reuses it)."""
    return {
        "spark.master": settings.spark_master,
        "spark.app.name": "cart-lakehouse",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(settings.spark_shuffle_partitions),
        "spark.sql.sources.partitionOverwriteMode": "dynamic",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.memory": "2g",
    }


def build_resources(settings: LakeSettings | None = None) -> dict[str, Any]:
    settings = settings or lake_settings()
    endpoint = settings.aws_endpoint_url
    return {
        "aws": AwsResource(aws_endpoint_url=endpoint, aws_region=settings.aws_region),
        "lake": LakeResource(root=settings.lake_root, aws_endpoint_url=endpoint, aws_region=settings.aws_region),
        "catalog": CatalogResource(
            database=settings.glue_database, aws_endpoint_url=endpoint, aws_region=settings.aws_region
        ),
        "pyspark": LazyPySparkResource(spark_config=spark_config(settings)),
        "dbt": DbtCliResource(project_dir=str(project_dir())),
    }
