"""Silver with real PySpark on temporary local lakes: types, deduplication, quarantine reasons,
enrichment, idempotent reruns, empty hours, backfills, reconciliation, Dagster, and the job run as
EMR Serverless runs it (spark-submit of the entry point, Pipes through S3) on a local cluster."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as arrow
import pyarrow.parquet as pq
import pytest
from dagster import materialize
from dagster_aws.pipes import PipesEMRServerlessClient
from dagster_pyspark import LazyPySparkResource
from pyspark.sql import SparkSession

from cart_api.settings import Settings
from cart_aws.aws import AwsClients
from cart_dev.seed import stored_purchases
from cart_lakehouse.assets.products import reference_products
from cart_lakehouse.assets.silver import SILVER_PURCHASES, SILVER_QUARANTINE, per_hour_table, silver_purchases
from cart_lakehouse.checks.gates import QUALITY_GATES
from cart_lakehouse.checks.schemas import type_mismatches, validate
from cart_lakehouse.jobs.products import products_table, write_products
from cart_lakehouse.jobs.silver import (
    PARTITION_COLUMNS,
    QUARANTINE_TABLE,
    SILVER_TABLE,
    SilverResult,
    build_silver,
)
from cart_lakehouse.jobs.silver_entry import DRIVER_ENV
from cart_lakehouse.lake import Lake
from cart_lakehouse.layout import SILVER, bronze_file
from cart_lakehouse.layout import SILVER_QUARANTINE as QUARANTINE
from cart_lakehouse.partitions import Hour
from cart_lakehouse.resources import (
    CatalogResource,
    LakeResource,
    SilverRunnerResource,
    emr_pipes_client,
    spark_config,
)
from tests.conftest import SHORT_LIVED_JVM, SPARK_SETTINGS

HOUR = Hour(datetime(2026, 11, 25, 3, tzinfo=UTC))
NEXT = Hour(HOUR.end)
LATER = Hour(NEXT.end)
REPO = Path(__file__).resolve().parents[3]
UUID_PATTERN = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
DROP = object()  # marks a field to remove from a purchase
CLUSTER = "local-cluster[2,1,1024]"  # 2 workers, 1 core and 1024 MB each
SILVER_GATES = [
    c for c in QUALITY_GATES if {k.asset_key for k in c.check_keys} <= {SILVER_PURCHASES, SILVER_QUARANTINE}
]


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    """An empty local lake with the products dimension in place."""
    the_lake = Lake.open(str(tmp_path / "lake"))
    write_products(the_lake, products_table())
    return the_lake


def purchases(hour: Hour, count: int, seed: int) -> list[dict[str, Any]]:
    return stored_purchases(hour.start, count, seed=seed)


def changed(purchase: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = {**purchase, **changes}
    return {k: v for k, v in out.items() if v is not DROP}


def write_bronze(lake: Lake, hour: Hour, rows: list[dict[str, Any] | str]) -> list[str]:
    """Write an hour's bronze file as bronze does (one JSON object per line); strings go verbatim."""
    lines = [r if isinstance(r, str) else json.dumps(r, separators=(",", ":")) for r in rows]
    lake.write_bytes(bronze_file(hour), "".join(f"{line}\n" for line in lines).encode())
    return lines


def read(lake: Lake, location: str, hour: Hour) -> arrow.Table | None:
    files = parquet_files(lake, location, hour)
    if not files:
        return None
    tables = [pq.read_table(lake.path(f)) for f in files]
    return arrow.concat_tables(tables)


def parquet_files(lake: Lake, location: str, hour: Hour) -> list[str]:
    return [f for f in lake.files(f"{location}/{hour.path}") if f.endswith(".parquet")]


def rows_by_id(table: arrow.Table | None) -> dict[str, dict[str, Any]]:
    return {r["purchase_id"]: r for r in table.to_pylist()} if table is not None else {}


def assert_reconciles(result: SilverResult) -> None:
    for h in result.hours:
        assert h.bronze_rows == h.silver_rows + h.quarantined + h.duplicates_removed, h
    assert result.unaccounted == 0


def test_silver_is_typed_by_the_contract_and_passes_its_quality_gate(spark: SparkSession, lake: Lake) -> None:
    rows = purchases(HOUR, 30, seed=1)
    rows[0] = changed(rows[0], total_amount=129.9, number_of_installments=1)
    # another offset than Z: 05:30+02:00 is 03:30 UTC, inside the hour
    rows[1] = changed(rows[1], received_at="2026-11-25T05:30:00.000001+02:00", purchase_date="2026-11-26")
    write_bronze(lake, HOUR, list(rows))

    result = build_silver(spark, lake, [HOUR])

    table = read(lake, SILVER, HOUR)
    assert table is not None
    assert type_mismatches(table.schema, SILVER_TABLE) == []  # decimal(12,2), date, timestamp UTC, int, bool
    assert validate(table.to_pandas(), SILVER_TABLE, table.schema).passed  # the Pandera gate the lead derives
    assert table.num_rows == result.silver_rows == 30
    assert not set(PARTITION_COLUMNS) & set(table.schema.names)  # the partition columns are in the paths only
    by_id = rows_by_id(table)
    first, second = by_id[rows[0]["purchase_id"]], by_id[rows[1]["purchase_id"]]
    assert first["total_amount"] == Decimal("129.90")
    assert first["paid_in_installments"] is False
    assert first["received_at"] == datetime.fromisoformat(rows[0]["received_at"])
    assert second["received_at"] == datetime(2026, 11, 25, 3, 30, 0, 1, tzinfo=UTC)
    assert str(second["received_at"].tzinfo) == "UTC"
    assert second["purchase_date"].isoformat() == "2026-11-26"  # one day after receipt is allowed
    assert {r["ingest_hour"] for r in by_id.values()} == {HOUR.ingest_hour}
    assert result.revenue == sum(Decimal(str(r["total_amount"])) for r in rows)
    assert result.quarantined == result.duplicates_removed == 0
    assert lake.files(f"{QUARANTINE}/{HOUR.path}") == []


def test_duplicates_keep_the_latest_valid_copy(spark: SparkSession, lake: Lake) -> None:
    base, other = purchases(HOUR, 2, seed=2)
    copies = [
        changed(base, received_at="2026-11-25T03:10:00.000000Z", total_amount=10.0),
        changed(base, received_at="2026-11-25T03:50:00.000000Z", total_amount=50.0),
        changed(base, received_at="2026-11-25T03:30:00.000000Z", total_amount=30.0),
    ]
    newer_but_broken = changed(base, received_at="2026-11-25T03:55:00.000000Z", number_of_installments="abc")
    rows = [*copies, copies[1], newer_but_broken, other]  # the latest copy was also delivered twice
    write_bronze(lake, HOUR, rows)

    result = build_silver(spark, lake, [HOUR])

    silver = rows_by_id(read(lake, SILVER, HOUR))
    assert set(silver) == {base["purchase_id"], other["purchase_id"]}
    assert silver[base["purchase_id"]]["total_amount"] == Decimal("50.00")
    assert (result.silver_rows, result.duplicates_removed, result.quarantined) == (2, 3, 1)
    quarantine = read(lake, QUARANTINE, HOUR)
    assert quarantine is not None
    assert quarantine.column("purchase_id").to_pylist() == [base["purchase_id"]]  # not a duplicate: quarantined
    assert_reconciles(result)


def test_each_kind_of_bad_row_is_quarantined_with_a_readable_reason(spark: SparkSession, lake: Lake) -> None:
    good = purchases(HOUR, 40, seed=3)
    cases: list[tuple[dict[str, Any], str]] = [
        (changed(good[0], number_of_installments="abc"), "number_of_installments: expected an integer, got string"),
        (changed(good[1], total_amount="129.90"), "total_amount: expected a number, got string"),
        (changed(good[2], buyer_id=DROP), "buyer_id: required"),
        (changed(good[3], product_id=None), "product_id: required"),
        (changed(good[4], number_of_installments=0), "number_of_installments: must be >= 1"),
        (changed(good[5], number_of_installments=25), "number_of_installments: must be <= 24"),
        (changed(good[6], number_of_installments=2.5), "number_of_installments: expected an integer, got number"),
        (changed(good[7], total_amount=0), "total_amount: must be > 0"),
        (changed(good[8], total_amount=-5.5), "total_amount: must be > 0"),
        (changed(good[9], total_amount=1000000.01), "total_amount: must be <= 1000000"),
        (changed(good[10], total_amount=12.345), "total_amount: not a multiple of 0.01"),
        (changed(good[11], total_amount=1e-05), "total_amount: not a multiple of 0.01"),
        (changed(good[12], purchase_date="2026-13-01"), "purchase_date: not a date in yyyy-MM-dd format"),
        (changed(good[13], purchase_date="25/11/2026"), "purchase_date: not a date in yyyy-MM-dd format"),
        (changed(good[14], purchase_date="2019-12-31"), "purchase_date: must be >= 2020-01-01"),
        (
            changed(good[15], purchase_date="2026-11-27"),
            "purchase_date: more than 1 day(s) after the day of receipt (received_at)",
        ),
        (
            changed(good[16], received_at="2026-11-25T03:10:00"),
            "received_at: not an ISO 8601 timestamp with a time zone",
        ),
        (
            changed(good[17], received_at="2026-11-25T04:10:00.000000Z"),
            "received_at: outside the hour of its bronze partition",
        ),
        (changed(good[18], ingest_hour="2026-11-25T04"), "ingest_hour: not the hour of its bronze partition"),
        (changed(good[19], buyer_id="bad buyer"), "buyer_id: does not match ^[A-Za-z0-9][A-Za-z0-9_.-]*$"),
        (changed(good[20], buyer_id="B" * 65), "buyer_id: longer than 64 characters"),
        (changed(good[21], schema_version="1.0"), "schema_version: does not match ^[0-9]+\\.[0-9]+\\.[0-9]+$"),
        (changed(good[22], coupon="XMAS"), "unknown fields: coupon"),
        (changed(good[23], purchase_id="not-a-uuid"), f"purchase_id: does not match {UUID_PATTERN}"),
        (
            changed(good[24], total_amount="lots", number_of_installments=None),
            "number_of_installments: required; total_amount: expected a number, got string",
        ),
    ]
    unreadable = [
        ("{this is not json", "unparseable JSON"),
        ('{"purchase_id": "a", "purchase_id": "b"}', "unparseable JSON"),  # duplicate keys
        ("[1, 2, 3]", "not a JSON object"),
        ('"just a string"', "not a JSON object"),
        (json.dumps(changed(good[25], purchase_id=123)), "purchase_id: expected a string, got integer"),
    ]
    edge_but_valid = [
        changed(good[26], total_amount=1000000),
        changed(good[27], number_of_installments=24),
        changed(good[28], total_amount=0.01, purchase_date="2020-01-01"),
        changed(good[29], product_id="X-1"),  # unknown to the products dimension: still a valid purchase
    ]
    lines = write_bronze(lake, HOUR, [*(row for row, _ in cases), *(line for line, _ in unreadable), *edge_but_valid])

    result = build_silver(spark, lake, [HOUR])

    quarantine = read(lake, QUARANTINE, HOUR)
    assert quarantine is not None
    assert type_mismatches(quarantine.schema, QUARANTINE_TABLE) == []
    got = {r["raw"]: r for r in quarantine.to_pylist()}
    assert set(got) == set(lines[: len(cases) + len(unreadable)])  # verbatim lines; the edge cases are silver
    for (row, reason), line in zip(cases, lines, strict=False):
        assert got[line]["reason"] == reason, row
        assert got[line]["purchase_id"] == row["purchase_id"]
        assert got[line]["ingest_hour"] == HOUR.ingest_hour
    for line, reason in unreadable:
        assert got[line]["reason"] == reason
        assert got[line]["purchase_id"] is None  # not readable as a string
    assert result.quarantined == len(cases) + len(unreadable)
    assert result.silver_rows == len(edge_but_valid)
    assert result.reasons["total_amount: not a multiple of 0.01"] == 2
    assert result.reasons["unparseable JSON"] == 2
    assert result.reasons["number_of_installments: required"] == 1  # a row breaking two rules counts for both
    assert sum(result.reasons.values()) == result.quarantined + 1
    assert_reconciles(result)


def test_unknown_products_are_kept_with_category_unknown(spark: SparkSession, lake: Lake) -> None:
    known, unknown = purchases(HOUR, 2, seed=4)
    known, unknown = changed(known, product_id="P0003"), changed(unknown, product_id="P9999")
    write_bronze(lake, HOUR, [known, unknown])

    build_silver(spark, lake, [HOUR])

    silver = rows_by_id(read(lake, SILVER, HOUR))
    product = next(p for p in products_table().to_pylist() if p["product_id"] == "P0003")
    enriched = silver[known["purchase_id"]]
    assert {k: enriched[k] for k in product} == product
    assert {k: silver[unknown["purchase_id"]][k] for k in product} == {
        "product_id": "P9999",
        "product_name": None,
        "category": "unknown",
        "brand": None,
        "department": None,
        "retail_price": None,
    }


def test_reruns_replace_exactly_their_hours(spark: SparkSession, lake: Lake) -> None:
    write_bronze(lake, HOUR, [*purchases(HOUR, 20, seed=5), "{broken"])
    write_bronze(lake, NEXT, purchases(NEXT, 10, seed=6))
    first = build_silver(spark, lake, [HOUR, NEXT])
    before = {h: (read(lake, SILVER, h), read(lake, QUARANTINE, h)) for h in (HOUR, NEXT)}

    again = build_silver(spark, lake, [HOUR, NEXT])

    assert again == first
    for hour in (HOUR, NEXT):
        silver, quarantine = read(lake, SILVER, hour), read(lake, QUARANTINE, hour)
        assert silver is not None
        assert silver.equals(before[hour][0])  # same rows, same order
        assert len(parquet_files(lake, SILVER, hour)) == 1  # replaced, not appended
        assert quarantine == before[hour][1]
    assert len(parquet_files(lake, QUARANTINE, HOUR)) == 1
    assert parquet_files(lake, QUARANTINE, NEXT) == []

    # late data in HOUR, rerun alone: NEXT keeps its files untouched
    next_files = lake.files(f"{SILVER}/{NEXT.path}")
    write_bronze(lake, HOUR, purchases(HOUR, 21, seed=5))
    late = build_silver(spark, lake, [HOUR])
    assert late.silver_rows == 21
    assert lake.files(f"{SILVER}/{NEXT.path}") == next_files
    assert read(lake, QUARANTINE, HOUR) is None  # the broken line is gone from bronze, so from the quarantine


def test_an_hour_that_is_now_empty_leaves_no_stale_rows(spark: SparkSession, lake: Lake) -> None:
    write_bronze(lake, HOUR, [*purchases(HOUR, 5, seed=7), "not json"])
    write_bronze(lake, NEXT, [*purchases(NEXT, 5, seed=8), "not json"])
    build_silver(spark, lake, [HOUR, NEXT])
    assert read(lake, SILVER, HOUR) is not None
    assert read(lake, QUARANTINE, NEXT) is not None

    lake.write_bytes(bronze_file(HOUR), b"")  # bronze rewrote the hour as empty
    lake.delete(bronze_file(NEXT))  # or it has no file at all
    result = build_silver(spark, lake, [HOUR, NEXT])

    assert result.bronze_rows == result.silver_rows == result.quarantined == 0
    for hour in (HOUR, NEXT):
        for location in (SILVER, QUARANTINE):
            assert lake.files(f"{location}/{hour.path}") == []


def test_many_hours_in_one_call_equal_the_hours_one_by_one(spark: SparkSession, lake: Lake, tmp_path: Path) -> None:
    shared = purchases(HOUR, 1, seed=9)[0]
    in_next = changed(shared, received_at=f"{NEXT.ingest_hour}:15:00.000000Z", ingest_hour=NEXT.ingest_hour)
    write_bronze(lake, HOUR, [*purchases(HOUR, 12, seed=10), shared, "oops"])
    write_bronze(lake, NEXT, [*purchases(NEXT, 7, seed=11), in_next, in_next])
    hours = [HOUR, NEXT, LATER]  # LATER has no bronze file: an empty hour
    one_by_one = Lake.open(str(tmp_path / "one_by_one"))
    shutil.copytree(lake.root, one_by_one.root)

    together = build_silver(spark, lake, hours)
    separately = [build_silver(spark, one_by_one, [h]).hours[0] for h in hours]

    assert together.hours == tuple(separately)
    assert [(h.bronze_rows, h.silver_rows, h.quarantined, h.duplicates_removed) for h in together.hours] == [
        (14, 13, 1, 0),  # "oops" quarantined
        (9, 8, 0, 1),  # in_next delivered twice
        (0, 0, 0, 0),
    ]
    for hour in hours:
        for location in (SILVER, QUARANTINE):
            a, b = read(lake, location, hour), read(one_by_one, location, hour)
            assert (a is None and b is None) or (a is not None and b is not None and a.equals(b))
    # deduplication is per hour: a purchase in two hours' bronze stays in both (each hour is replaced alone)
    assert shared["purchase_id"] in rows_by_id(read(lake, SILVER, HOUR))
    assert shared["purchase_id"] in rows_by_id(read(lake, SILVER, NEXT))
    assert {f.rsplit("/", 1)[0] for f in lake.files(SILVER) if f.endswith(".parquet")} == {
        f"{SILVER}/{HOUR.path}",
        f"{SILVER}/{NEXT.path}",
    }
    assert_reconciles(together)


def test_reconciliation_holds_against_the_files_in_the_lake(spark: SparkSession, lake: Lake) -> None:
    rows = purchases(HOUR, 25, seed=12)
    lines = write_bronze(lake, HOUR, [*rows, rows[0], rows[1], changed(rows[2], total_amount=0), "{", ""])

    result = build_silver(spark, lake, [HOUR])

    bronze_lines = [line for line in lines if line.strip()]  # a blank line is no row (as bronze counts it)
    silver, quarantine = read(lake, SILVER, HOUR), read(lake, QUARANTINE, HOUR)
    assert silver is not None
    assert quarantine is not None
    hour = result.hours[0]
    assert hour.bronze_rows == len(bronze_lines) == 29
    assert (hour.silver_rows, hour.quarantined, hour.duplicates_removed) == (silver.num_rows, quarantine.num_rows, 2)
    assert hour.bronze_rows == hour.silver_rows + hour.quarantined + hour.duplicates_removed
    assert hour.revenue == sum(silver.column("total_amount").to_pylist(), Decimal(0))


def test_the_dagster_assets_materialize_products_and_silver(
    spark: SparkSession, settings: Settings, tmp_path: Path
) -> None:
    hour = Hour(datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3))
    lake = Lake.open(str(tmp_path / "lake"))
    bought = purchases(hour, 15, seed=13)
    bought[0] = changed(bought[0], product_id="P9999")  # no products file ever described it
    write_bronze(lake, hour, [*bought, "not json"])
    resources = {
        "lake": LakeResource(root=lake.root),
        "pyspark": LazyPySparkResource(spark_config=spark_config(SPARK_SETTINGS)),
        "catalog": CatalogResource(database=settings.glue_database, aws_endpoint_url=settings.aws_endpoint_url),
        "silver_runner": SilverRunnerResource(),  # in-process
    }

    result = materialize([reference_products, silver_purchases], partition_key=hour.key, resources=resources)

    assert result.success
    assert lake.exists("reference/products/products.parquet")
    materialized = {m.asset_key: m.metadata for m in result.asset_materializations_for_node("silver_purchases")}
    silver, quarantine = materialized[SILVER_PURCHASES], materialized[SILVER_QUARANTINE]
    assert silver["dagster/row_count"].value == 15
    assert silver["duplicates_removed"].value == 0
    assert silver["unknown_product_purchases"].value == 1
    assert silver["unknown_products"].value == {"P9999": 1}
    assert silver["reconciliation"].value == "bronze 16 = silver 15 + quarantined 1 + duplicates removed 0"
    assert [c.name for c in silver["dagster/column_schema"].value.columns][:2] == ["purchase_id", "buyer_id"]
    assert "| purchase_id |" in silver["preview"].value
    assert quarantine["dagster/row_count"].value == 1
    assert quarantine["reasons"].value == {"unparseable JSON": 1}
    assert quarantine["location"].value == lake.uri(QUARANTINE)
    assert read(lake, SILVER, hour) is not None
    assert silver["glue_table"].value == f"{settings.glue_database}.silver_purchases"
    assert silver["glue_partitions_added"].value == 1
    assert silver["spark_master"].value == SPARK_SETTINGS.spark_master  # the run's own Spark
    timings = silver["timings"].value
    assert list(timings)[:2] == ["Spark session", "list bronze files"]
    assert {
        "classify and count (read, parse, contract rules, dedupe)",
        "enrich and write silver",
        "write quarantine",
    } <= set(timings)
    assert all(seconds >= 0 for seconds in timings.values())


class LocalEMRServerless(PipesEMRServerlessClient):
    """dagster-aws's EMR Serverless Pipes client whose job runs here: the job run is started on the
    moto server (botocore checks the request against EMR Serverless's API), then run as EMR runs it,
    from what the service stored: the entry point downloaded from S3, ``spark-submit`` with its
    arguments and confs, each ``spark.emr-serverless.driverEnv.*`` conf as the driver's environment.
    The master is a ``local-cluster`` (executors in separate JVMs) instead of EMR's workers."""

    def _wait_for_completion(self, context: Any, start_response: Any) -> Any:
        job_run = self.client.get_job_run(
            applicationId=start_response["applicationId"], jobRunId=start_response["jobRunId"]
        )
        run_job_as_emr_does(job_run["jobRun"]["jobDriver"]["sparkSubmit"], self.s3)
        return super()._wait_for_completion(context, start_response)  # the moto server: SUCCESS

    s3: Any = None


def run_job_as_emr_does(submit: dict[str, Any], s3: Any) -> str:
    bucket, _, key = submit["entryPoint"].removeprefix("s3://").partition("/")
    workdir = Path(tempfile.mkdtemp(prefix="emr-job-"))
    entry = workdir / Path(key).name
    entry.write_bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    confs, env = [], {k: os.environ[k] for k in ("PATH", "HOME", "JAVA_HOME", "LANG", "TMPDIR") if k in os.environ}
    words = shlex.split(submit.get("sparkSubmitParameters", ""))
    for flag, value in zip(words[::2], words[1::2], strict=True):
        assert flag == "--conf", words
        name, _, setting = value.partition("=")
        if name.startswith(DRIVER_ENV):
            env[name.removeprefix(DRIVER_ENV)] = setting
        else:
            confs += ["--conf", value]
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    env["PYSPARK_PYTHON"] = env["PYSPARK_DRIVER_PYTHON"] = sys.executable  # EMR: the image's or the archive's
    cluster = {
        "spark.driver.memory": "1g",
        "spark.executor.memory": "512m",  # must fit in a worker's 1024 MB
        "spark.driver.extraJavaOptions": SHORT_LIVED_JVM,  # three JVMs (108 s -> 60 s of CPU measured)
        "spark.executor.extraJavaOptions": SHORT_LIVED_JVM,
        # the job starts once both executors have joined (what a poll of the executors did before)
        "spark.cores.max": "2",
        "spark.scheduler.minRegisteredResourcesRatio": "1.0",
        "spark.scheduler.maxRegisteredResourcesWaitingTime": "300s",
    }
    command = [str(Path(sys.executable).parent / "spark-submit"), "--master", CLUSTER]
    for name, value in cluster.items():
        command += ["--conf", f"{name}={value}"]
    done = subprocess.run(
        [*command, *confs, str(entry), *submit["entryPointArguments"]],
        cwd=workdir,  # not the repository: the job sees only its environment's packages
        env=env,
        capture_output=True,
        text=True,
        timeout=720,  # three JVMs on two shared cores: slow when the machine is busy
        check=False,
    )
    shutil.rmtree(workdir, ignore_errors=True)
    if done.returncode != 0:
        raise RuntimeError(f"spark-submit exited {done.returncode}:\n{done.stdout[-2000:]}{done.stderr[-4000:]}")
    return done.stdout


class LocalEMRRunner(SilverRunnerResource):
    """The production runner resource (emr-serverless), its Pipes client running jobs here."""

    def pipes_client(self) -> PipesEMRServerlessClient:
        client = emr_pipes_client(self.settings(), LocalEMRServerless, poll_seconds=1.0)
        assert isinstance(client, LocalEMRServerless)
        client.s3 = AwsClients(self.settings()).s3
        return client


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_silver_runs_as_emr_serverless_runs_it_on_a_local_cluster(
    spark: SparkSession, settings: Settings, aws: AwsClients, tmp_path: Path
) -> None:
    """The asset with the emr-serverless runner: the job run's request built, the entry point run
    by spark-submit as EMR runs it (executors in separate JVMs, nothing shared with the driver but
    files), its counts reported through Pipes in S3, then Glue and metadata as in-process. The same
    silver as the in-process job, file for file."""
    hour = Hour(datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3))
    hours = [hour, Hour(hour.end)]
    lake = Lake.open(str(tmp_path / "lake"))
    write_products(lake, products_table())
    for h, seed in zip(hours, (14, 15), strict=True):
        rows = purchases(h, 40, seed=seed)
        write_bronze(lake, h, [*rows, rows[3], changed(rows[4], total_amount="1"), "{", changed(rows[5], x=1)])
    emr_lake = Lake.open(str(tmp_path / "emr_lake"))
    shutil.copytree(lake.root, emr_lake.root)
    local = build_silver(spark, lake, hours)  # the in-process path, for comparison

    emr = aws.client("emr-serverless")
    application = emr.create_application(name="cart-silver", releaseLabel="emr-7.9.0", type="SPARK")
    entry_key = "jobs/silver_entry.py"  # uploaded as the README says
    aws.s3.upload_file(str(REPO / "cart_lakehouse/jobs/silver_entry.py"), settings.lake_bucket, entry_key)
    runner = LocalEMRRunner(
        runner="emr-serverless",
        emr_application_id=application["applicationId"],
        emr_execution_role_arn=f"arn:aws:iam::{aws.account_id}:role/cart-silver-job",
        emr_entry_point=f"s3://{settings.lake_bucket}/{entry_key}",
        emr_logs_uri=f"s3://{settings.lake_bucket}/logs/emr/",
        spark_shuffle_partitions=4,
        aws_endpoint_url=settings.aws_endpoint_url,
        aws_region=settings.aws_region,
    )
    resources = {
        "lake": LakeResource(root=emr_lake.root, aws_endpoint_url=settings.aws_endpoint_url),
        "pyspark": LazyPySparkResource(spark_config=spark_config(SPARK_SETTINGS)),  # not used: EMR runs Spark
        "catalog": CatalogResource(database=settings.glue_database, aws_endpoint_url=settings.aws_endpoint_url),
        "silver_runner": runner,
    }

    result = materialize(
        [silver_purchases, *SILVER_GATES],
        resources=resources,
        tags={"dagster/asset_partition_range_start": hours[0].key, "dagster/asset_partition_range_end": hours[1].key},
    )

    assert result.success
    materialized = {m.asset_key: m.metadata for m in result.asset_materializations_for_node("silver_purchases")}
    silver, quarantine = materialized[SILVER_PURCHASES], materialized[SILVER_QUARANTINE]
    assert silver["spark_master"].value == CLUSTER
    assert silver["executors"].value == 2
    assert silver["per_hour"].value == per_hour_table(local.hours)  # the counts per hour, through Pipes
    assert silver["dagster/row_count"].value == local.silver_rows
    assert silver["reconciliation"].value == (
        f"bronze {local.bronze_rows} = silver {local.silver_rows} + quarantined {local.quarantined} "
        f"+ duplicates removed {local.duplicates_removed}"
    )
    assert silver["revenue_exact"].value == str(local.revenue)
    assert silver["AWS EMR Serverless Application ID"].value == application["applicationId"]
    assert silver["glue_partitions_added"].value == 2
    assert {"EMR Serverless job run", "job: classify and count (read, parse, contract rules, dedupe)"} <= set(
        silver["timings"].value
    )
    assert quarantine["dagster/row_count"].value == local.quarantined
    assert quarantine["reasons"].value == dict(local.reasons.most_common())
    checks = {(e.asset_key, e.check_name): e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {
        (SILVER_PURCHASES, "contract"): True,
        (SILVER_QUARANTINE, "contract"): True,
        (SILVER_PURCHASES, "reconciles_with_bronze"): True,
    }
    for h in hours:
        for location in (SILVER, QUARANTINE):
            a, b = read(lake, location, h), read(emr_lake, location, h)
            assert a is not None
            assert b is not None
            assert a.equals(b)
