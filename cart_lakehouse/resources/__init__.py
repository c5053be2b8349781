"""Dagster resources of the lakehouse. Local and production differ in their configuration only."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Literal

from dagster import ConfigurableResource
from dagster_dbt import DbtCliResource
from dagster_pyspark import LazyPySparkResource

from cart_aws.aws import AwsClients
from cart_lakehouse.catalog import GlueCatalog
from cart_lakehouse.gold_project import project_dir
from cart_lakehouse.jobs.spark import (
    spark_config as spark_config,  # re-exported: tests and local.py build sessions with it
)
from cart_lakehouse.lake import Lake
from cart_lakehouse.settings import LakeSettings, lake_settings

if TYPE_CHECKING:  # dagster-aws takes about 3 s to import: only a run that goes to EMR pays it
    from dagster_aws.pipes import PipesEMRServerlessClient


class SparkResource(LazyPySparkResource):
    """Dagster's lazy PySpark resource, which can also attach to a Spark Connect server.

    With ``spark.remote`` in ``spark_config`` (``CART_SPARK_REMOTE``), the session is a Spark
    Connect client of that long-lived server, with its own server-side session; otherwise, as
    ``LazyPySparkResource``, a Spark of the process's own. The Connect session is built with
    Connect's own builder: the classic one refuses a Connect session in a process that already
    holds a local one (a benchmark comparing both), and this process starts no JVM for it.
    """

    def _init_session(self) -> None:
        if self._spark_session is None and "spark.remote" in self.spark_config:
            from pyspark.sql.connect.session import SparkSession as ConnectSession

            # as pyspark's own builder does: pyspark.sql.functions builds Connect columns only then
            os.environ["SPARK_CONNECT_MODE_ENABLED"] = "1"
            builder = ConnectSession.builder
            for key, value in self.spark_config.items():
                builder = builder.config(key, value)
            self._spark_session = builder.getOrCreate()  # type: ignore[assignment]  # declared None upstream
        super()._init_session()


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


def emr_pipes_client(
    settings: LakeSettings,
    client_type: type[PipesEMRServerlessClient] | None = None,
    *,
    poll_seconds: float = 10.0,
) -> PipesEMRServerlessClient:
    """dagster-aws's EMR Serverless Pipes client, with the Pipes context and messages in S3.

    S3 rather than the client's default (context in a driverEnv conf, messages scraped from the
    driver's CloudWatch log stream): the job already reads and writes S3, needs no CloudWatch
    logging on the application, and its output comes back with the messages
    (``include_stdio_in_messages``) into the step's compute log. dagster-aws logs a warning that
    the S3 reader "is not supported" for EMR Serverless: it is about attaching CloudWatch log
    readers; the S3 reader's own thread reads the messages.
    """
    from dagster_aws.pipes import PipesEMRServerlessClient, PipesS3ContextInjector, PipesS3MessageReader

    clients = AwsClients(settings)
    bucket = settings.emr_pipes_bucket or settings.lake_bucket
    return (client_type or PipesEMRServerlessClient)(
        client=clients.client("emr-serverless"),
        context_injector=PipesS3ContextInjector(bucket=bucket, client=clients.s3, key_prefix="pipes/"),
        message_reader=PipesS3MessageReader(
            bucket=bucket, client=clients.s3, interval=poll_seconds, include_stdio_in_messages=True
        ),
        poll_interval=poll_seconds,
    )


class SilverRunnerResource(ConfigurableResource):  # type: ignore[type-arg]
    """Where silver's Spark job runs: ``in-process`` (the run's Spark session) or ``emr-serverless``
    (a job run on EMR Serverless through Dagster Pipes, the job being ``jobs/silver_entry.py``)."""

    runner: Literal["in-process", "emr-serverless"] = "in-process"
    emr_application_id: str | None = None
    emr_execution_role_arn: str | None = None
    emr_entry_point: str | None = None
    emr_logs_uri: str | None = None
    emr_pipes_bucket: str | None = None
    spark_shuffle_partitions: int = 4
    aws_endpoint_url: str | None = None
    aws_region: str = "us-east-1"

    def settings(self) -> LakeSettings:
        """The settings of the job run (validated: emr-serverless needs the EMR ones)."""
        values = {name: getattr(self, name) for name in _RUNNER_SETTINGS}
        return LakeSettings(silver_runner=self.runner, **{**values, "aws_endpoint_url": self.aws_endpoint_url or ""})

    def pipes_client(self) -> PipesEMRServerlessClient:
        return emr_pipes_client(self.settings())

    @classmethod
    def from_settings(cls, settings: LakeSettings) -> SilverRunnerResource:
        return cls(runner=settings.silver_runner, **{name: getattr(settings, name) for name in _RUNNER_SETTINGS})


# what the resource carries under the settings' own names (the runner is LakeSettings.silver_runner)
_RUNNER_SETTINGS = (
    "emr_application_id",
    "emr_execution_role_arn",
    "emr_entry_point",
    "emr_logs_uri",
    "emr_pipes_bucket",
    "spark_shuffle_partitions",
    "aws_endpoint_url",
    "aws_region",
)


def build_resources(settings: LakeSettings | None = None) -> dict[str, Any]:
    settings = settings or lake_settings()
    endpoint = settings.aws_endpoint_url
    return {
        "aws": AwsResource(aws_endpoint_url=endpoint, aws_region=settings.aws_region),
        "lake": LakeResource(root=settings.lake_root, aws_endpoint_url=endpoint, aws_region=settings.aws_region),
        "catalog": CatalogResource(
            database=settings.glue_database, aws_endpoint_url=endpoint, aws_region=settings.aws_region
        ),
        "pyspark": SparkResource(spark_config=spark_config(settings)),
        "silver_runner": SilverRunnerResource.from_settings(settings),
        "dbt": DbtCliResource(project_dir=str(project_dir())),
    }
