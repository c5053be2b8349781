"""Silver as a submitted Spark application: the script EMR Serverless runs with spark-submit, and the
job run's parameters that make it do so.

``start_job_run_params(settings, lake_root, hours)`` builds the EMR Serverless ``StartJobRun``
request (the silver asset hands it to dagster-aws's ``PipesEMRServerlessClient``); EMR then runs::

    spark-submit [the request's sparkSubmitParameters] silver_entry.py --lake-root <root> <partition key>...

with each ``spark.emr-serverless.driverEnv.NAME=VALUE`` conf as an environment variable of the
driver. The script builds the Spark session with the project's Spark settings, runs the same
``build_silver`` as the in-process path, and reports both silver tables' materializations with
their counts through Dagster Pipes (context and messages in S3, as the Pipes session's parameters
say). Started without Dagster (a plain spark-submit), it runs all the same and prints its counts.
It imports ``dagster_pipes``, never ``dagster``: the job's Python environment needs no Dagster.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from dagster_pipes import (
    PipesContext,
    PipesContextLoader,
    PipesDefaultContextLoader,
    PipesDefaultMessageWriter,
    PipesEnvVarParamsLoader,
    PipesMessageWriter,
    PipesS3ContextLoader,
    PipesS3MessageWriter,
    open_dagster_pipes,
)
from pyspark.sql import SparkSession

from cart_aws.aws import AwsClients
from cart_lakehouse.hours import Hour
from cart_lakehouse.jobs.silver import HourCounts, SilverResult, build_silver
from cart_lakehouse.jobs.spark import session_config
from cart_lakehouse.lake import Lake
from cart_lakehouse.layout import SILVER, SILVER_QUARANTINE
from cart_lakehouse.settings import LakeSettings
from cart_lakehouse.timings import Timings

SILVER_ASSET = "silver/purchases"  # asset keys as Pipes spells them
QUARANTINE_ASSET = "silver/purchases_quarantine"
DRIVER_ENV = "spark.emr-serverless.driverEnv."  # EMR Serverless: the driver's environment, as confs
JOB_PYTHON = "/usr/bin/python3.11"  # the job image's Python (deploy/emr/Dockerfile); EMR's default is older
RUN_TIMEOUT_MINUTES = 120  # a day's backfill takes minutes; a stuck job must not bill for 12 hours


# --- The Dagster side: the job run's parameters ---------------------------------------------------


def driver_environment(settings: LakeSettings) -> dict[str, str]:
    """The ``CART_*`` settings the job reads on the driver (region and endpoint of the lake's S3 and
    of the Pipes bucket, the shuffle partitions)."""
    env = {
        "CART_AWS_REGION": settings.aws_region,
        "CART_SPARK_SHUFFLE_PARTITIONS": str(settings.spark_shuffle_partitions),
    }
    if settings.aws_endpoint_url:
        env["CART_AWS_ENDPOINT_URL"] = settings.aws_endpoint_url
    return env


def _required(settings: LakeSettings, name: str) -> str:
    value = getattr(settings, name)
    if not value:
        raise ValueError(f"silver on EMR Serverless needs CART_{name.upper()}")
    return str(value)


def start_job_run_params(settings: LakeSettings, lake_root: str, hours: Sequence[Hour]) -> dict[str, Any]:
    """The ``StartJobRun`` request of one silver run over ``hours`` (the Pipes client adds its own
    bootstrap environment and tags to it)."""
    hours = sorted(set(hours))
    if not hours:
        raise ValueError("a silver job run needs at least one hour")
    environment = {
        **driver_environment(settings),
        "PYSPARK_DRIVER_PYTHON": JOB_PYTHON,
        "PYSPARK_PYTHON": JOB_PYTHON,
    }
    confs = {f"{DRIVER_ENV}{name}": value for name, value in environment.items()}
    confs["spark.executorEnv.PYSPARK_PYTHON"] = JOB_PYTHON  # no Python UDF, but Spark checks it
    for name, value in confs.items():
        if any(c.isspace() for c in f"{name}{value}"):  # sparkSubmitParameters is split on spaces
            raise ValueError(f"spark-submit conf {name}={value!r} must not contain spaces")
    span = hours[0].key if len(hours) == 1 else f"{hours[0].key}..{hours[-1].key}"
    return {
        "applicationId": _required(settings, "emr_application_id"),
        "executionRoleArn": _required(settings, "emr_execution_role_arn"),
        "name": f"cart-silver {span}",
        "jobDriver": {
            "sparkSubmit": {
                "entryPoint": _required(settings, "emr_entry_point"),
                "entryPointArguments": ["--lake-root", lake_root, *(h.key for h in hours)],
                "sparkSubmitParameters": " ".join(f"--conf {name}={value}" for name, value in confs.items()),
            }
        },
        "configurationOverrides": {
            "monitoringConfiguration": {"s3MonitoringConfiguration": {"logUri": _required(settings, "emr_logs_uri")}}
        },
        "executionTimeoutMinutes": RUN_TIMEOUT_MINUTES,
    }


# --- What the job reports, and how the asset reads it back ----------------------------------------


def counts_json(hours: Sequence[HourCounts]) -> dict[str, dict[str, Any]]:
    """Per hour key: the counts, the revenue (exact, as text) and the quarantine reasons."""
    return {
        h.hour.key: {
            "bronze_rows": h.bronze_rows,
            "silver_rows": h.silver_rows,
            "quarantined": h.quarantined,
            "duplicates_removed": h.duplicates_removed,
            "revenue": str(h.revenue),
            "reasons": dict(h.reasons),
        }
        for h in hours
    }


def result_from_counts(counts: Mapping[str, Mapping[str, Any]], lake: Lake) -> SilverResult:
    """The ``SilverResult`` a job reported as ``counts_json`` (for the Glue registration and metadata)."""
    hours = tuple(
        HourCounts(
            Hour.from_key(key),
            bronze_rows=int(c["bronze_rows"]),
            silver_rows=int(c["silver_rows"]),
            quarantined=int(c["quarantined"]),
            duplicates_removed=int(c["duplicates_removed"]),
            revenue=Decimal(str(c["revenue"])),
            reasons=Counter({str(k): int(v) for k, v in dict(c["reasons"]).items()}),
        )
        for key, c in sorted(counts.items())
    )
    return SilverResult(hours, lake.uri(SILVER), lake.uri(SILVER_QUARANTINE))


def executors(session: SparkSession) -> int:
    """Executors registered with the driver (the driver's own block manager is not one)."""
    return int(session.sparkContext._jsc.sc().getExecutorMemoryStatus().size()) - 1


def job_report(session: SparkSession, result: SilverResult, timings: Timings) -> dict[str, Any]:
    return {
        "spark_master": session.sparkContext.master,
        "executors": executors(session),
        "hours": counts_json(result.hours),
        "timings": {k: round(v, 3) for k, v in timings.seconds.items()},
    }


def report_to_dagster(pipes: PipesContext, result: SilverResult, report: Mapping[str, Any]) -> None:
    """Both tables' materializations, with the counts as metadata (``hours``: ``counts_json``)."""
    totals: dict[str, Any] = {
        "bronze_rows": {"raw_value": result.bronze_rows, "type": "int"},
        "silver_rows": {"raw_value": result.silver_rows, "type": "int"},
        "quarantined": {"raw_value": result.quarantined, "type": "int"},
        "duplicates_removed": {"raw_value": result.duplicates_removed, "type": "int"},
        "revenue_exact": {"raw_value": str(result.revenue), "type": "text"},
        "hours": {"raw_value": report["hours"], "type": "json"},
    }
    pipes.report_asset_materialization(
        asset_key=SILVER_ASSET,
        metadata={
            **totals,
            "spark_master": {"raw_value": report["spark_master"], "type": "text"},
            "executors": {"raw_value": report["executors"], "type": "int"},
            "job_timings": {"raw_value": report["timings"], "type": "json"},
        },
    )
    pipes.report_asset_materialization(
        asset_key=QUARANTINE_ASSET,
        metadata={**totals, "reasons": {"raw_value": dict(result.reasons.most_common()), "type": "json"}},
    )


# --- The driver -----------------------------------------------------------------------------------


@contextmanager
def dagster_pipes(settings: LakeSettings) -> Iterator[PipesContext | None]:
    """The Pipes context when Dagster started this job (None otherwise), reading the context and
    writing the messages where the session's parameters say: S3 (a bucket), or a file/env/stdio."""
    params = PipesEnvVarParamsLoader()  # type: ignore[no-untyped-call]
    if not params.is_dagster_pipes_process():
        yield None
        return
    s3 = AwsClients(settings).s3
    loader: PipesContextLoader = (
        PipesS3ContextLoader(s3) if "bucket" in params.load_context_params() else PipesDefaultContextLoader()
    )
    writer: PipesMessageWriter[Any] = (
        PipesS3MessageWriter(s3, interval=5)
        if "bucket" in params.load_messages_params()
        else PipesDefaultMessageWriter()
    )
    with open_dagster_pipes(context_loader=loader, message_writer=writer, params_loader=params) as pipes:
        yield pipes


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="silver_entry.py", description="Build silver for the given hours.")
    parser.add_argument("--lake-root", required=True, help="the lake: s3://bucket/prefix, or a local folder")
    parser.add_argument("hours", nargs="+", help="partition keys of the hours (2026-11-25-03:00 ...)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    settings = LakeSettings()  # CART_* from the driver's environment (EMR: the driverEnv confs)
    hours = [Hour.from_key(key) for key in args.hours]
    with dagster_pipes(settings) as pipes:
        builder = SparkSession.builder
        for key, value in session_config(settings).items():
            builder = builder.config(key, value)
        session = builder.getOrCreate()
        session.sparkContext.setLogLevel("WARN")
        try:
            timings = Timings()
            result = build_silver(session, Lake.open(args.lake_root, settings), hours, timings)
            report = job_report(session, result, timings)
        finally:
            session.stop()
        print(json.dumps(report, sort_keys=True), flush=True)  # the last line of stdout
        if pipes is not None:
            report_to_dagster(pipes, result, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
