"""The Glue catalog on the moto server: tables from the contracts, partitions added once."""

from __future__ import annotations

import pytest

from cart_api.settings import Settings
from cart_aws.aws import AwsClients
from cart_lakehouse.catalog import CatalogTable, GlueCatalog, hive_type

SILVER = CatalogTable("silver_purchases", "silver_purchases", "s3://cart-lake/lake/silver/purchases")


def test_a_table_is_registered_from_its_contract_and_again_changes_nothing(settings: Settings, aws: AwsClients) -> None:
    catalog = GlueCatalog(aws.glue, settings.glue_database)
    first = catalog.register(SILVER, [("2026", "11", "25", "03")])
    assert (first.action, first.partitions_added) == ("created", 1)
    again = catalog.register(SILVER, [("2026", "11", "25", "03"), ("2026", "11", "25", "04")])
    assert (again.action, again.partitions_added) == ("unchanged", 1)

    table = aws.glue.get_table(DatabaseName=settings.glue_database, Name="silver_purchases")["Table"]
    columns = {c["Name"]: c["Type"] for c in table["StorageDescriptor"]["Columns"]}
    assert columns["total_amount"] == "decimal(12,2)"
    assert columns["received_at"] == "timestamp"
    assert columns["number_of_installments"] == "int"
    assert [k["Name"] for k in table["PartitionKeys"]] == ["year", "month", "day", "hour"]
    assert table["Parameters"]["classification"] == "parquet"
    partition = aws.glue.get_partition(
        DatabaseName=settings.glue_database, TableName="silver_purchases", PartitionValues=["2026", "11", "25", "04"]
    )["Partition"]
    assert partition["StorageDescriptor"]["Location"] == (
        "s3://cart-lake/lake/silver/purchases/year=2026/month=11/day=25/hour=04/"
    )
    assert sorted(catalog.partition_values("silver_purchases")) == [
        ["2026", "11", "25", "03"],
        ["2026", "11", "25", "04"],
    ]


def test_a_changed_location_updates_the_table(settings: Settings, aws: AwsClients) -> None:
    catalog = GlueCatalog(aws.glue, settings.glue_database)
    catalog.register(SILVER)
    moved = CatalogTable("silver_purchases", "silver_purchases", "s3://elsewhere/silver/purchases")
    assert catalog.register(moved).action == "updated"
    table = aws.glue.get_table(DatabaseName=settings.glue_database, Name="silver_purchases")["Table"]
    assert table["StorageDescriptor"]["Location"] == "s3://elsewhere/silver/purchases/"


def test_many_partitions_are_added_in_batches(settings: Settings, aws: AwsClients) -> None:
    catalog = GlueCatalog(aws.glue, settings.glue_database)
    daily = CatalogTable("buyer_daily", "buyer_daily", "/lake/gold/buyer_daily", partition_keys=("day",))
    days = [(f"2026-{m:02d}-{d:02d}",) for m in range(1, 9) for d in range(1, 29)]
    assert catalog.register(daily, days).partitions_added == len(days) == 224
    assert len(catalog.partition_values("buyer_daily")) == 224
    columns = [c["Name"] for c in daily.columns()]
    assert "day" not in columns  # a partition key is not also a column


def test_unknown_types_are_refused() -> None:
    assert hive_type("decimal(18,2)") == "decimal(18,2)"
    with pytest.raises(ValueError, match="no Hive type"):
        hive_type("varchar2")
