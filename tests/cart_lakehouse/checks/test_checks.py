"""The contract check factory: rules from the contract, failure metadata, and blocking."""

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as arrow
import pyarrow.parquet as pq
import pytest
from dagster import AssetExecutionContext, AssetKey, materialize
from dagster import asset as dagster_asset

from cart_lakehouse.checks import CheckedTable, contract_check
from cart_lakehouse.checks.schemas import arrow_frame, arrow_schema, type_mismatches, validate
from cart_lakehouse.lake import Lake
from cart_lakehouse.partitions import Hour, hourly_partitions
from cart_lakehouse.resources import LakeResource

HOUR = Hour(datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3))


def silver_row(**changes: Any) -> dict[str, Any]:
    received = HOUR.start + timedelta(minutes=5)
    return {
        "purchase_id": str(uuid.uuid4()),
        "buyer_id": "B000001",
        "product_id": "P0001",
        "number_of_installments": 2,
        "total_amount": Decimal("10.50"),
        "purchase_date": received.date(),
        "received_at": received,
        "ingest_hour": HOUR.ingest_hour,
        "schema_version": "1.0.0",
        "product_name": "Thing",
        "category": "home",
        "brand": "Acme",
        "department": "hardlines",
        "retail_price": Decimal("12.00"),
        "paid_in_installments": True,
        **changes,
    }


def test_a_clean_table_passes() -> None:
    frame = pd.DataFrame([silver_row(), silver_row(category="unknown", product_name=None, brand=None)])
    assert validate(frame, "silver_purchases").passed


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        ({"total_amount": Decimal("0")}, "total_amount: total_amount > 0"),
        ({"number_of_installments": 25}, "number_of_installments: number_of_installments <= 24"),
        ({"category": "weapons"}, "category: category in"),
        ({"buyer_id": None}, "buyer_id: not_nullable"),
        ({"purchase_id": "not-a-uuid"}, "purchase_id: purchase_id matches"),
        ({"purchase_date": date(2019, 12, 31)}, "purchase_date: purchase_date >= 2020-01-01"),
        ({"buyer_id": "B" * 65}, "buyer_id: buyer_id length within bounds"),
        ({"schema_version": "1.0"}, "schema_version: schema_version matches"),
    ],
)
@pytest.mark.parametrize("columns", ["python objects", "arrow"])
def test_each_contract_rule_catches_its_row(change: dict[str, Any], rule: str, columns: str) -> None:
    rows = [silver_row(), silver_row(**change), silver_row()]
    if columns == "arrow":  # as the asset check reads the lake: Arrow columns, Arrow's kernels
        schema = arrow_schema("silver_purchases")
        nullable = arrow.schema([f.with_nullable(True) for f in schema])  # the bad row may hold a null
        frame = arrow_frame(arrow.Table.from_pylist(rows, schema=nullable))
        assert all(isinstance(t, pd.ArrowDtype) for t in frame.dtypes)
    else:
        frame = pd.DataFrame(rows)
    result = validate(frame, "silver_purchases")
    assert not result.passed
    assert result.failed_rows == 1
    assert any(r.startswith(rule) for r in result.failures), result.failures
    assert len(result.sample) == 1


def test_duplicate_keys_fail_uniqueness() -> None:
    row = silver_row()
    result = validate(pd.DataFrame([row, row]), "silver_purchases")
    assert result.failures == {"(purchase_id): unique": 2}
    assert result.failed_rows == 2
    in_arrow = validate(
        arrow_frame(arrow.Table.from_pylist([row, row], schema=arrow_schema("silver_purchases"))), "silver_purchases"
    )
    assert (in_arrow.failures, in_arrow.failed_rows) == (result.failures, 2)


def test_composite_keys_are_unique_together() -> None:
    day = date(2026, 11, 24)
    at = datetime(2026, 11, 24, 9, 30)
    rows = [
        {
            "day": day,
            "buyer_id": buyer,
            "purchases": 1,
            "spend": Decimal("1.00"),
            "first_purchase_at": at,
            "last_purchase_at": at,
        }
        for buyer in ("B1", "B2")
    ]
    assert validate(pd.DataFrame(rows), "buyer_daily").passed
    assert validate(pd.DataFrame([*rows, rows[0]]), "buyer_daily").failures == {"(day, buyer_id): unique": 2}


def test_types_are_checked_against_the_physical_types() -> None:
    good = arrow_schema("silver_purchases")
    assert type_mismatches(good, "silver_purchases") == []
    bad = good.set(good.get_field_index("total_amount"), arrow.field("total_amount", arrow.float64()))
    bad = bad.append(arrow.field("surprise", arrow.string()))
    assert type_mismatches(bad, "silver_purchases") == [
        "total_amount: double, contract says decimal128(12, 2) (decimal(12,2))",
        "surprise: not in the contract",
    ]


def _pipeline(rows: list[dict[str, Any]]) -> tuple[list[Any], list[str]]:
    """A stand-in silver asset writing the rows, its contract check, and a downstream asset."""
    ran: list[str] = []

    @dagster_asset(key=["silver", "purchases"], partitions_def=hourly_partitions)
    def silver(context: AssetExecutionContext, lake: LakeResource) -> None:
        table = arrow.Table.from_pylist(rows, schema=arrow_schema("silver_purchases"))
        path = lake.lake().path(f"silver/purchases/{Hour.from_key(context.partition_key).path}")
        Path(path).mkdir(parents=True, exist_ok=True)
        pq.write_table(table, f"{path}/part-0.parquet")

    @dagster_asset(key=["gold", "downstream"], deps=[silver], partitions_def=hourly_partitions)
    def downstream() -> None:
        ran.append("downstream")

    check = contract_check(CheckedTable(AssetKey(["silver", "purchases"]), "silver_purchases", "silver/purchases"))
    return [silver, downstream, check], ran


def test_a_failing_check_blocks_what_depends_on_the_table(tmp_path: Path) -> None:
    defs, ran = _pipeline([silver_row(), silver_row(total_amount=Decimal("-3.00"))])
    result = materialize(
        defs, partition_key=HOUR.key, resources={"lake": LakeResource(root=str(tmp_path))}, raise_on_error=False
    )
    assert not result.success
    (evaluation,) = result.get_asset_check_evaluations()
    assert not evaluation.passed
    assert evaluation.metadata["failed_rows"].value == 1
    assert "-3.00" in evaluation.metadata["sample"].value
    assert ran == []  # blocked
    assert result.asset_materializations_for_node("gold__downstream") == []


def test_a_passing_check_lets_downstream_run(tmp_path: Path) -> None:
    defs, ran = _pipeline([silver_row(), silver_row()])
    result = materialize(defs, partition_key=HOUR.key, resources={"lake": LakeResource(root=str(tmp_path))})
    assert result.success
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.passed
    assert evaluation.metadata["rows"].value == 2
    assert ran == ["downstream"]


def test_an_hour_without_files_passes_with_a_note(tmp_path: Path) -> None:
    check = contract_check(CheckedTable(AssetKey(["silver", "purchases"]), "silver_purchases", "silver/purchases"))

    @dagster_asset(key=["silver", "purchases"], partitions_def=hourly_partitions)
    def silver() -> None:
        pass

    result = materialize([silver, check], partition_key=HOUR.key, resources={"lake": LakeResource(root=str(tmp_path))})
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.passed
    assert Lake.open(str(tmp_path)).files("silver") == []
