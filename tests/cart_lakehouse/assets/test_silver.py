"""What the silver asset reads back from a job run on EMR Serverless (Pipes): the counts the entry
point reported, or a Failure that says where the driver's log is when it reported none."""

from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from dagster import Failure, MaterializeResult, MetadataValue

from cart_lakehouse.assets.silver import SILVER_PURCHASES, SILVER_QUARANTINE, reported_result
from cart_lakehouse.jobs.silver import HourCounts
from cart_lakehouse.jobs.silver_entry import counts_json
from cart_lakehouse.lake import Lake
from cart_lakehouse.partitions import Hour
from cart_lakehouse.timings import Timings

HOUR = Hour(datetime(2026, 11, 25, 3, tzinfo=UTC))
COUNTS = (HourCounts(HOUR, 10, 7, 2, 1, Decimal("129.90"), Counter({"unparseable JSON": 2})),)
LOGS = "s3://cart-lake-prod/logs/emr/"


def test_the_reported_counts_timings_and_job_facts_become_the_result(tmp_path: Path) -> None:
    reported = MaterializeResult(
        asset_key=SILVER_PURCHASES,
        metadata={
            "hours": MetadataValue.json(counts_json(COUNTS)),
            "job_timings": MetadataValue.json({"classify and count": 4.5}),
            "spark_master": "local-cluster[2,1,1024]",
            "executors": 2,
        },
    )
    timings = Timings()

    result, metadata = reported_result(
        [reported], {"AWS EMR Serverless Job Run ID": "00abc"}, Lake.open(str(tmp_path)), LOGS, timings
    )

    assert result.hours == COUNTS
    assert timings.seconds == {"job: classify and count": 4.5}
    assert metadata == {
        "spark_master": "local-cluster[2,1,1024]",
        "executors": 2,
        "AWS EMR Serverless Job Run ID": "00abc",
    }


@pytest.mark.parametrize(
    "results",
    [
        [],  # the job died before reporting anything
        [MaterializeResult(asset_key=SILVER_QUARANTINE, metadata={"hours": MetadataValue.json({})})],
        [MaterializeResult(asset_key=SILVER_PURCHASES, metadata={"executors": 2})],  # not silver's entry point
    ],
)
def test_a_job_that_reported_no_counts_fails_naming_its_logs(tmp_path: Path, results: list[MaterializeResult]) -> None:
    with pytest.raises(Failure, match=f"without reporting silver/purchases' counts.*{LOGS}"):
        reported_result(results, {}, Lake.open(str(tmp_path)), LOGS, Timings())
