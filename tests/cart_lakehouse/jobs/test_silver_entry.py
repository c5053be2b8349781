"""Silver's EMR Serverless entry point without Spark: the job run's request, the counts it reports
and reads back, its settings' validation, and that it needs no Dagster. (test_silver.py runs it,
with spark-submit, as EMR Serverless does.)"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from cart_lakehouse.hours import Hour
from cart_lakehouse.jobs.silver import HourCounts
from cart_lakehouse.jobs.silver_entry import (
    DRIVER_ENV,
    JOB_PYTHON,
    counts_json,
    dagster_pipes,
    parse_args,
    result_from_counts,
    start_job_run_params,
)
from cart_lakehouse.lake import Lake
from cart_lakehouse.settings import LakeSettings

HOUR = Hour(datetime(2026, 11, 25, 3, tzinfo=UTC))
NEXT = Hour(HOUR.end)
EMR = {
    "silver_runner": "emr-serverless",
    "emr_application_id": "00fabc123",
    "emr_execution_role_arn": "arn:aws:iam::123456789012:role/cart-silver-job",
    "emr_entry_point": "s3://cart-code/cart/silver_entry.py",
    "emr_logs_uri": "s3://cart-lake-prod/logs/emr/",
}


def confs(params: dict[str, object]) -> dict[str, str]:
    words = shlex.split(params["jobDriver"]["sparkSubmit"]["sparkSubmitParameters"])  # type: ignore[index]
    assert words[::2] == ["--conf"] * (len(words) // 2)
    return dict(w.split("=", 1) for w in words[1::2])


def test_the_job_run_request_runs_the_entry_point_for_the_hours() -> None:
    settings = LakeSettings(**EMR, aws_endpoint_url="", aws_region="eu-west-1", spark_shuffle_partitions=8)

    params = start_job_run_params(settings, "s3://cart-lake-prod/lake", [NEXT, HOUR, NEXT])

    assert params["applicationId"] == "00fabc123"
    assert params["executionRoleArn"] == EMR["emr_execution_role_arn"]
    assert params["name"] == f"cart-silver {HOUR.key}..{NEXT.key}"
    submit = params["jobDriver"]["sparkSubmit"]
    assert submit["entryPoint"] == EMR["emr_entry_point"]
    assert submit["entryPointArguments"] == ["--lake-root", "s3://cart-lake-prod/lake", HOUR.key, NEXT.key]
    assert parse_args(submit["entryPointArguments"]).hours == [HOUR.key, NEXT.key]  # what the script parses
    assert confs(params) == {  # real AWS: no endpoint override
        f"{DRIVER_ENV}CART_AWS_REGION": "eu-west-1",
        f"{DRIVER_ENV}CART_SPARK_SHUFFLE_PARTITIONS": "8",
        f"{DRIVER_ENV}PYSPARK_DRIVER_PYTHON": JOB_PYTHON,  # the job image's Python 3.11
        f"{DRIVER_ENV}PYSPARK_PYTHON": JOB_PYTHON,
        "spark.executorEnv.PYSPARK_PYTHON": JOB_PYTHON,
    }
    logs = params["configurationOverrides"]["monitoringConfiguration"]["s3MonitoringConfiguration"]
    assert logs == {"logUri": EMR["emr_logs_uri"]}
    assert params["executionTimeoutMinutes"] >= 5


def test_bad_requests_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="at least one hour"):
        start_job_run_params(LakeSettings(**EMR), "s3://lake", [])
    with pytest.raises(ValueError, match="must not contain spaces"):
        start_job_run_params(LakeSettings(**EMR, aws_region="eu west"), "s3://lake", [HOUR])


def test_emr_serverless_needs_its_settings() -> None:
    with pytest.raises(ValidationError, match="needs CART_EMR_APPLICATION_ID, CART_EMR_LOGS_URI"):
        LakeSettings(**{**EMR, "emr_application_id": "", "emr_logs_uri": ""})
    with pytest.raises(ValidationError, match="CART_EMR_ENTRY_POINT must be s3:// URIs"):
        LakeSettings(**{**EMR, "emr_entry_point": "cart_lakehouse/jobs/silver_entry.py"})
    assert LakeSettings(emr_application_id="").silver_runner == "in-process"  # the default needs none


def test_the_reported_counts_read_back_as_the_jobs_result(tmp_path: Path) -> None:
    hours = (
        HourCounts(HOUR, 10, 7, 2, 1, Decimal("129.90"), Counter({"unparseable JSON": 2})),
        HourCounts(NEXT),
    )
    lake = Lake.open(str(tmp_path))

    result = result_from_counts(counts_json(hours), lake)

    assert result.hours == hours
    assert result.silver_location == lake.uri("silver/purchases")


def test_without_dagster_the_job_runs_without_pipes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAGSTER_PIPES_CONTEXT", raising=False)
    monkeypatch.delenv("DAGSTER_PIPES_MESSAGES", raising=False)

    with dagster_pipes(LakeSettings()) as pipes:
        assert pipes is None


def test_the_entry_point_imports_no_dagster() -> None:
    """EMR's Python environment holds dagster-pipes (a small package of its own), not Dagster."""
    probe = (
        "import sys, cart_lakehouse.jobs.silver_entry, dagster_pipes; "
        "print(sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0].startswith('dagster')}))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)

    assert done.stdout.strip() == "['dagster_pipes']"
