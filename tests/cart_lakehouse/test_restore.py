"""Disaster recovery, tested: silver, gold, the star schema and the marts of a day are deleted and
rebuilt from bronze alone by ONE run over the day's hours (the single-run backfill
``docs/operations.md`` tells the on-call engineer to launch), and every table comes back identical.

What "identical" compares: each table's rows (read with pyarrow, sorted) and its Arrow schema
without the Parquet key-value metadata, file by file under gold/ and silver/star/ (whose paths are
fixed: ``day=…/part-HH.parquet``, ``day=…/data.parquet``, ``<dim>/data.parquet``, so the set of
paths is compared too), and hour directory by hour directory for silver and its quarantine (Spark
names its files ``part-<uuid>``, a new name on every write: the directories are compared, not the
file names). Not the bytes: Parquet footers record the writer, so equal tables need not be equal
files, and what a reader sees is the rows and their types. Bronze, which the rebuild only reads,
must be byte for byte what it was.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from dagster import AssetSelection, ExecuteInProcessResult
from pyspark.sql import SparkSession

from cart_api.settings import Settings
from cart_api.store import to_item
from cart_aws.aws import AwsClients
from cart_aws.provision import provision
from cart_dev.local_aws import MotoServer
from cart_dev.seed import put_purchases, stored_purchases
from cart_lakehouse.lake import Lake
from cart_lakehouse.layout import BRONZE, GOLD_TABLES, SILVER, SILVER_QUARANTINE
from cart_lakehouse.local import local_resources
from cart_lakehouse.partitions import Hour
from tests.cart_lakehouse.pipeline import run
from tests.conftest import SPARK_SETTINGS

pytestmark = pytest.mark.e2e  # a lake built and rebuilt by the pipeline: `make test-quick` leaves it out

DAY = (datetime.now(UTC) - timedelta(days=3)).replace(hour=0, minute=0, second=0, microsecond=0)
HOURS = [Hour(DAY + timedelta(hours=h)) for h in (9, 10, 11)]  # consecutive: one window, one run
# what a rebuild from bronze materializes: everything downstream of bronze (reference/products is
# read as it is in the lake; bronze is not extracted again)
REBUILD = AssetSelection.groups("silver", "gold", "star", "marts")
Snapshot = dict[str, tuple[str, list[str]]]


def rows_of(files: list[str]) -> tuple[str, list[str]]:
    """The Arrow schema (without Parquet metadata) and the sorted rows of some Parquet files."""
    if not files:
        return "", []
    tables = [pq.read_table(f) for f in files]
    schemas = {str(t.schema.remove_metadata()) for t in tables}
    rows = [json.dumps(r, sort_keys=True, default=str) for t in tables for r in t.to_pylist()]
    return "\n".join(sorted(schemas)), sorted(rows)


def snapshot(lake: Lake, day: datetime) -> Snapshot:
    """What a reader of the day's silver, gold, star and marts sees: path → (schema, sorted rows).
    Gold, star and marts per file (their paths are fixed); silver and its quarantine per hour
    directory (Spark's file names change with every write)."""
    out: Snapshot = {}
    for table in GOLD_TABLES.values():
        where = table.location if table.kind == "whole" else table.day_dir(day.date())
        for f in lake.files(where):
            out[f] = rows_of([lake.path(f)])
    for layer in (SILVER, SILVER_QUARANTINE):
        for hour in HOURS:
            files = [lake.path(f) for f in lake.files(f"{layer}/{hour.path}") if f.endswith(".parquet")]
            if files:
                out[f"{layer}/{hour.path}/"] = rows_of(files)
    return out


def lose_the_day(lake: Lake, day: datetime) -> None:
    """The disaster: the day's silver (and quarantine), gold, star fact and marts are gone, and the
    star's dimensions (whole tables, rebuilt by every run) with them."""
    day_path = HOURS[0].path.rsplit("/", 1)[0]  # year=/month=/day=
    for layer in (SILVER, SILVER_QUARANTINE):
        lake.delete(f"{layer}/{day_path}")
    for table in GOLD_TABLES.values():
        lake.delete(table.location if table.kind == "whole" else table.day_dir(day.date()))


def reconciliation(result: ExecuteInProcessResult) -> dict[str, Any]:
    """silver ← bronze's counts as the run's check reported them."""
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "reconciles_with_bronze"]
    assert evaluation.passed
    return {k: v.value for k, v in evaluation.metadata.items()}


def test_a_day_of_silver_and_gold_deleted_is_rebuilt_from_bronze_by_one_run_identical(
    moto_server: MotoServer, settings: Settings, aws: AwsClients, tmp_path: Path, spark: SparkSession
) -> None:
    lake = Lake.open(str(tmp_path / "lake"))
    resources = local_resources(settings, lake.root, SPARK_SETTINGS)
    purchases = [p for n, h in enumerate(HOURS) for p in stored_purchases(h.start, 25 + 5 * n, seed=60 + n)]
    put_purchases(aws, settings.purchases_table, purchases)
    # a row the contract refuses (written past the API): bronze keeps it, silver quarantines it
    bad = {**stored_purchases(HOURS[1].start, 1, seed=63)[0], "total_amount": -5}
    aws.dynamodb.put_item(TableName=settings.purchases_table, Item=to_item(bad, settings.ingest_shards))
    built = run(resources, *HOURS)
    assert built.success
    before = snapshot(lake, DAY)
    bronze = {f: lake.read_bytes(f) for f in lake.files(BRONZE)}
    assert len(bronze) == len(HOURS)
    built_tables = {m for m, t in GOLD_TABLES.items() if any(k.startswith(f"{t.location}/") for k in before)}
    assert built_tables == set(GOLD_TABLES)
    assert {f"{layer}/{h.path}/" for layer in (SILVER, SILVER_QUARANTINE) for h in HOURS} & set(before) == {
        *(f"{SILVER}/{h.path}/" for h in HOURS),
        f"{SILVER_QUARANTINE}/{HOURS[1].path}/",
    }

    lose_the_day(lake, DAY)
    assert snapshot(lake, DAY) == {}
    # DynamoDB is lost too (the table dropped; a fresh one provisioned): bronze is all there is
    moto_server.reset()
    provision(settings)

    rebuilt = run(resources, *HOURS, selection=REBUILD)

    assert rebuilt.success
    assert all(e.passed for e in rebuilt.get_asset_check_evaluations())
    after = snapshot(lake, DAY)
    assert sorted(after) == sorted(before)  # the same files (gold, star, marts) and hour directories
    assert {k for k in before if after[k] != before[k]} == set()
    assert {f: lake.read_bytes(f) for f in lake.files(BRONZE)} == bronze
    counts = reconciliation(rebuilt)
    assert counts == reconciliation(built)
    assert (counts["bronze_rows"], counts["quarantined_rows"]) == (len(purchases) + 1, 1)

    # the comparison sees a difference when there is one: a gold file with one row fewer
    (hourly,) = [f for f in after if f.endswith(f"part-{HOURS[0].start:%H}.parquet") and "sales_hourly" in f]
    table = pq.read_table(lake.path(hourly))
    pq.write_table(table.slice(1), lake.path(hourly))
    assert {k for k, v in snapshot(lake, DAY).items() if v != before[k]} == {hourly}
