"""The file drop's KPIs: computed from silver as the contract defines them (checked against a plain
Python computation written here), merged into Delta (local and on the moto server's S3) and pushed
to DynamoDB, with re-drops, late files, a recategorized product and the reconciliations."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pyarrow as arrow
import pytest
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError

from cart_aws.aws import AwsClients
from cart_aws.settings import AwsSettings
from cart_dev.local_aws import MotoServer
from cart_dev.proxy import FaultProxy
from cart_lakehouse.checks.schemas import arrow_schema
from cart_lakehouse.filedrop import kpis
from cart_lakehouse.filedrop.kpi_tables import KpiPushError, push_kpis, storage_options
from cart_lakehouse.filedrop.layout import kpi_table, silver_dir
from cart_lakehouse.filedrop.store import write_parquet
from cart_lakehouse.lake import Lake

S1 = "20250301T100000Z-11111111"
S2 = "20250302T100000Z-22222222"
S3 = "20250303T100000Z-33333333"
D1, D2 = date(2025, 3, 1), date(2025, 3, 2)
NAMES = ("category_kpis", "order_kpis")


# --- hand-built silver ---------------------------------------------------------------------------


def at(day: date, hour: int = 12, minute: int = 0, tz: timezone = UTC) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz)


def order(order_id: str, user: str, status: str, created: datetime) -> dict[str, Any]:
    # in UTC already: pandera (imported with the check factory) sets PYARROW_IGNORE_TIMEZONE=1, and
    # then pyarrow reads a Python datetime's wall-clock time, whatever its offset
    created = created.astimezone(UTC)
    return {"order_id": order_id, "user_id": user, "status": status, "created_at": created, "num_of_item": 1}


def item(order_id: str, product_id: str, status: str, price: float | None) -> dict[str, Any]:
    return {
        "id": f"{order_id}-{product_id}",
        "order_id": order_id,
        "user_id": "u",
        "product_id": product_id,
        "status": status,
        "sale_price": price,
    }


def product(product_id: str, category: str | None) -> dict[str, Any]:
    return {"id": product_id, "sku": f"SKU-{product_id}", "category": category, "name": "n", "brand": "b"}


def write_set(lake: Lake, set_id: str, **tables: list[dict[str, Any]]) -> None:
    """A set's silver, as the lead's silver step writes it: one typed Parquet file per table."""
    for table, rows in tables.items():
        schema = arrow_schema(table, contract="filedrop")
        typed = arrow.Table.from_pylist([{n: r.get(n) for n in schema.names} for r in rows], schema=schema)
        write_parquet(lake, f"{silver_dir(table, set_id)}/data.parquet", typed)


# Every item status, every order status, a returned order, an unknown product (P0009, no row), a
# product without a category (P0004), an item whose order is in no set (O99), an order created at
# 23:30 at UTC-2 (so on D2 in UTC), and a category whose average order value is exactly half a cent.
ORDERS = [
    order("O1", "u1", "delivered", at(D1, 10)),
    order("O2", "u2", "returned", at(D1, 23, 59)),
    order("O3", "u1", "cancelled", at(D1, 0, 0)),
    order("O4", "u3", "pending", at(D2, 0, 0)),
    order("O5", "u4", "processing", at(D2, 9)),
    order("O6", "u4", "shipped", at(D2, 18)),
    order("O7", "u5", "delivered", at(D1, 23, 30, timezone(timedelta(hours=-2)))),
    order("O8", "u6", "delivered", at(D1, 8)),
    order("O9", "u7", "delivered", at(D1, 9)),
]
ITEMS = [
    item("O1", "P0001", "delivered", 100.10),
    item("O1", "P0002", "shipped", 20.05),
    item("O2", "P0001", "returned", 50.00),
    item("O2", "P0003", "returned", 30.00),
    item("O3", "P0002", "cancelled", 15.00),
    item("O4", "P0001", "pending", 10.01),
    item("O4", "P0009", "processing", 5.55),
    item("O5", "P0003", "processing", 0.99),
    item("O5", "P0004", "delivered", 7.77),
    item("O6", "P0002", "shipped", 12.34),
    item("O6", "P0003", "returned", 4.00),
    item("O7", "P0001", "delivered", 1.10),
    item("O7", "P0003", "delivered", None),
    item("O8", "P0005", "delivered", 0.10),
    item("O9", "P0005", "delivered", 0.15),
    item("O99", "P0001", "delivered", 3.00),
]
PRODUCTS = [
    product("P0001", "electronics"),
    product("P0002", "home"),
    product("P0003", "fashion"),
    product("P0004", None),
    product("P0005", "toys"),
]


def first_set(lake: Lake) -> None:
    write_set(lake, S1, orders=ORDERS, order_items=ITEMS, products=PRODUCTS)


# --- the independent computation -----------------------------------------------------------------


def cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def latest_rows(sets: list[dict[str, list[dict[str, Any]]]], table: str, key: tuple[str, ...]) -> list[dict[str, Any]]:
    """Later sets replace earlier rows with the same key (the sets are given oldest first)."""
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    for tables in sets:
        for row in tables.get(table, []):
            rows[tuple(row[k] for k in key)] = row
    return list(rows.values())


def expected(
    sets: list[dict[str, list[dict[str, Any]]]], dates: set[date], set_of: dict[date, str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Both KPI tables for ``dates`` from the definitions, in plain Python with exact decimals."""
    orders = latest_rows(sets, "orders", ("order_id",))
    items = latest_rows(sets, "order_items", ("order_id", "product_id"))
    categories = {p["id"]: p["category"] or "unknown" for p in latest_rows(sets, "products", ("id",))}
    day_of = {o["order_id"]: o["created_at"].astimezone(UTC).date() for o in orders}
    by_day: dict[date, list[dict[str, Any]]] = defaultdict(list)
    for o in orders:
        by_day[day_of[o["order_id"]]].append(o)
    order_rows, category_items = [], defaultdict(list)
    for i in items:
        day = day_of.get(i["order_id"])
        if day in dates:
            category_items[(categories.get(i["product_id"], "unknown"), day)].append(i)
    for day in sorted(d for d in dates if by_day[d]):
        day_items = [i for i in items if day_of.get(i["order_id"]) == day]
        sold = [i for i in day_items if i["status"] not in ("cancelled", "returned")]
        day_orders = by_day[day]
        order_rows.append(
            {
                "order_date": day,
                "total_orders": len(day_orders),
                "total_revenue": float(
                    cents(sum((Decimal(str(i["sale_price"])) for i in sold if i["sale_price"] is not None), Decimal(0)))
                ),
                "total_items_sold": len(sold),
                "return_rate": sum(o["status"] == "returned" for o in day_orders) / len(day_orders),
                "unique_customers": len({o["user_id"] for o in day_orders}),
                "updated_by_set": set_of[day],
            }
        )
    category_rows = []
    for (category, day), its in sorted(category_items.items()):
        sold = [i for i in its if i["status"] not in ("cancelled", "returned")]
        revenue = cents(sum((Decimal(str(i["sale_price"])) for i in sold if i["sale_price"] is not None), Decimal(0)))
        sold_orders = len({i["order_id"] for i in sold})
        category_rows.append(
            {
                "category": category,
                "order_date": day,
                "daily_revenue": float(revenue),
                "avg_order_value": float(cents(revenue / sold_orders)) if sold_orders else 0.0,
                "avg_return_rate": sum(i["status"] == "returned" for i in its) / len(its),
                "updated_by_set": set_of[day],
            }
        )
    return category_rows, order_rows


FIRST = [{"orders": ORDERS, "order_items": ITEMS, "products": PRODUCTS}]


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake.open(str(tmp_path / "lake"))


def ensure_kpi_tables(aws: AwsClients) -> None:
    """The two DynamoDB KPI tables, unless provisioning already made them."""
    existing = set(aws.dynamodb.list_tables()["TableNames"])
    specs = {
        aws.settings.category_kpis_table: [("category", "HASH"), ("order_date", "RANGE")],
        aws.settings.order_kpis_table: [("order_date", "HASH")],
    }
    for name, keys in specs.items():
        if name not in existing:
            aws.dynamodb.create_table(
                TableName=name,
                KeySchema=[{"AttributeName": k, "KeyType": t} for k, t in keys],  # type: ignore[misc]
                AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k, _ in keys],
                BillingMode="PAY_PER_REQUEST",
            )


@pytest.fixture
def dynamo(aws: AwsClients) -> AwsClients:
    ensure_kpi_tables(aws)
    return aws


def dynamo_table(aws: AwsClients, name: str) -> str:
    return aws.settings.category_kpis_table if name == "category_kpis" else aws.settings.order_kpis_table


def run_set(
    lake: Lake, set_id: str, aws: AwsClients | None = None, settings: AwsSettings | None = None
) -> dict[str, Any]:
    """What the KPI step does for one set: dates, compute, merge each table, push what Delta holds."""
    dates = kpis.touched_dates(lake, set_id)
    computed = kpis.compute_kpis(lake, dates, set_id)
    out: dict[str, Any] = {"dates": dates, "kpis": computed}
    for name in NAMES:
        out[name] = kpis.merge_kpis(lake, name, getattr(computed, name.removesuffix("_kpis")), dates, settings)
        if aws is not None:
            out[f"{name}_push"] = kpis.push_kpis(
                aws, dynamo_table(aws, name), kpis.read_kpis(lake, name, dates, settings), dates
            )
    return out


def rows_of(table: arrow.Table) -> list[dict[str, Any]]:
    return table.to_pylist()


# --- computation ---------------------------------------------------------------------------------


def test_kpis_equal_an_independent_computation(lake: Lake) -> None:
    first_set(lake)
    assert kpis.touched_dates(lake, S1) == [D1, D2]
    computed = kpis.compute_kpis(lake, [D1, D2], S1)
    category, order = expected(FIRST, {D1, D2}, {D1: S1, D2: S1})
    assert computed.category.schema == arrow_schema("category_kpis", contract="kpis")
    assert computed.order.schema == arrow_schema("order_kpis", contract="kpis")
    assert rows_of(computed.category) == category
    assert rows_of(computed.order) == order
    # the hand-built set's notable rows, so the expectation itself is checked too
    toys = next(r for r in category if r["category"] == "toys")
    assert (toys["daily_revenue"], toys["avg_order_value"]) == (0.25, 0.13)  # 0.125 rounds half up
    assert {r["category"] for r in category if r["order_date"] == D2} == {"electronics", "fashion", "home", "unknown"}
    assert next(r for r in order if r["order_date"] == D2)["total_orders"] == 4  # O7 is D2 in UTC
    assert computed.items_without_order == 1
    assert computed.items_without_order_sample == (("O99", "P0001"),)
    assert computed.unknown_product_items == 1  # P0009; P0004 has a row, without a category


def test_only_the_given_dates_are_computed(lake: Lake) -> None:
    first_set(lake)
    computed = kpis.compute_kpis(lake, [D2, date(2030, 1, 1)], S1)
    category, order = expected(FIRST, {D2}, {D2: S1})
    assert rows_of(computed.category) == category
    assert rows_of(computed.order) == order
    empty = kpis.compute_kpis(lake, [], S1)
    assert empty.category.num_rows == empty.order.num_rows == 0


def test_the_latest_set_wins_per_key(lake: Lake) -> None:
    first_set(lake)
    later_orders = [order("O1", "u1", "returned", at(D1, 10))]
    later_items = [item("O1", "P0001", "returned", 100.10), item("O4", "P0009", "processing", 6.00)]
    write_set(lake, S2, orders=later_orders, order_items=later_items, products=[product("P0002", "books")])
    orders = kpis.latest(lake, "orders")
    assert orders is not None
    assert orders.num_rows == len(ORDERS)
    by_id = {r["order_id"]: r for r in orders.to_pylist()}
    assert (by_id["O1"]["status"], by_id["O1"]["set_id"]) == ("returned", S2)
    assert by_id["O2"]["set_id"] == S1
    items = kpis.latest(lake, "order_items")
    assert items is not None
    assert items.num_rows == len(ITEMS)
    by_key = {(r["order_id"], r["product_id"]): r for r in items.to_pylist()}
    assert (by_key[("O4", "P0009")]["sale_price"], by_key[("O4", "P0009")]["set_id"]) == (6.00, S2)
    assert (by_key[("O1", "P0002")]["status"], by_key[("O1", "P0002")]["set_id"]) == ("shipped", S1)
    assert kpis.latest(lake, "nothing_here") is None
    # and the KPIs read the winners: the second set touches D1 (O1, P0002's items) and D2 (O4, P0002's items)
    assert kpis.touched_dates(lake, S2) == [D1, D2]
    sets = [*FIRST, {"orders": later_orders, "order_items": later_items, "products": [product("P0002", "books")]}]
    category, order_rows = expected(sets, {D1, D2}, {D1: S2, D2: S2})
    computed = kpis.compute_kpis(lake, [D1, D2], S2)
    assert rows_of(computed.category) == category
    assert rows_of(computed.order) == order_rows


# --- Delta and DynamoDB --------------------------------------------------------------------------


def test_redrop_changes_nothing_in_delta_nor_in_dynamodb(lake: Lake, dynamo: AwsClients) -> None:
    first_set(lake)
    first = run_set(lake, S1, dynamo, dynamo.settings)
    assert (first["category_kpis"].inserted, first["order_kpis"].inserted) == (8, 2)
    before = {n: kpis.read_kpis(lake, n) for n in NAMES}
    items_before = {n: kpis.read_items(dynamo, dynamo_table(dynamo, n)) for n in NAMES}
    versions = {n: DeltaTable(lake.uri(kpi_table(n))).version() for n in NAMES}
    write_set(lake, S2, orders=ORDERS, order_items=ITEMS, products=PRODUCTS)  # the same files, dropped again
    again = run_set(lake, S2, dynamo, dynamo.settings)
    for name in NAMES:
        stats = again[name]
        assert (stats.inserted, stats.updated, stats.deleted, stats.committed) == (0, 0, 0, False)
        assert stats.unchanged == before[name].num_rows
        assert DeltaTable(lake.uri(kpi_table(name))).version() == versions[name]
        assert kpis.read_kpis(lake, name).equals(before[name])  # updated_by_set still S1
        assert kpis.read_items(dynamo, dynamo_table(dynamo, name)) == items_before[name]
        assert kpis.dynamodb_mismatches(dynamo, lake, name, dynamo_table(dynamo, name)) == []
    assert kpis.revenue_mismatches(lake, [D1, D2]) == []


def test_a_late_items_file_changes_exactly_its_date(lake: Lake, dynamo: AwsClients) -> None:
    first_set(lake)
    run_set(lake, S1, dynamo, dynamo.settings)
    before = {n: kpis.read_kpis(lake, n) for n in NAMES}
    late = [item("O1", "P0003", "delivered", 9.99), item("O2", "P0002", "returned", 5.00)]  # both orders are D1
    write_set(lake, S2, order_items=late)
    result = run_set(lake, S2, dynamo, dynamo.settings)
    assert result["dates"] == [D1]
    category, order = expected([*FIRST, {"order_items": late}], {D1, D2}, {D1: S2, D2: S1})
    after = {n: kpis.read_kpis(lake, n).to_pylist() for n in NAMES}
    # D2 is untouched (still written by S1); D1's rows that changed are S2's, fashion's and home's
    # D1 rows change, and D1's electronics and toys rows keep their values and their writer
    unchanged_d1 = {"electronics", "toys"}
    for r in category:
        if r["order_date"] == D1 and r["category"] in unchanged_d1:
            r["updated_by_set"] = S1
    assert after["category_kpis"] == category
    assert after["order_kpis"] == order
    assert [r for r in after["order_kpis"] if r["order_date"] == D2] == [
        r for r in before["order_kpis"].to_pylist() if r["order_date"] == D2
    ]
    assert (result["category_kpis"].updated, result["category_kpis"].inserted) == (2, 0)
    assert (result["order_kpis"].updated, result["order_kpis"].unchanged) == (1, 0)
    for name in NAMES:
        assert kpis.dynamodb_mismatches(dynamo, lake, name, dynamo_table(dynamo, name)) == []
    assert kpis.revenue_mismatches(lake, [D1, D2]) == []


def test_a_recategorized_product_moves_its_revenue_and_removes_the_empty_category(
    lake: Lake, dynamo: AwsClients
) -> None:
    first_set(lake)
    run_set(lake, S1, dynamo, dynamo.settings)
    write_set(lake, S2, products=[product("P0005", "books")])  # toys only ever sold on D1
    result = run_set(lake, S2, dynamo, dynamo.settings)
    assert result["dates"] == [D1]
    assert (result["category_kpis"].inserted, result["category_kpis"].deleted) == (1, 1)
    category, _ = expected([*FIRST, {"products": [product("P0005", "books")]}], {D1, D2}, {D1: S1, D2: S1})
    got = kpis.read_kpis(lake, "category_kpis").to_pylist()
    assert {(r["category"], r["order_date"]) for r in got} == {(r["category"], r["order_date"]) for r in category}
    items = kpis.read_items(dynamo, dynamo.settings.category_kpis_table)
    assert not [i for i in items if i["category"] == "toys"]
    assert [i["daily_revenue"] for i in items if i["category"] == "books"] == [Decimal("0.25")]
    assert kpis.dynamodb_mismatches(dynamo, lake, "category_kpis", dynamo.settings.category_kpis_table) == []
    assert kpis.revenue_mismatches(lake, [D1, D2]) == []


def test_an_order_moved_to_another_day_recomputes_both_and_an_emptied_day_is_removed(
    lake: Lake, dynamo: AwsClients
) -> None:
    d3 = date(2025, 3, 3)
    first_set(lake)
    run_set(lake, S1, dynamo, dynamo.settings)
    moved = [order("O9", "u7", "delivered", at(d3, 9))]  # O9 (toys, 0.15) was D1's
    write_set(lake, S2, orders=moved)
    result = run_set(lake, S2, dynamo, dynamo.settings)
    assert result["dates"] == [D1, d3]
    _, order_rows = expected([*FIRST, {"orders": moved}], {D1, D2, d3}, {D1: S2, D2: S1, d3: S2})
    assert kpis.read_kpis(lake, "order_kpis").to_pylist() == order_rows
    toys = {
        r["order_date"]: r["daily_revenue"]
        for r in kpis.read_kpis(lake, "category_kpis").to_pylist()
        if r["category"] == "toys"
    }
    assert toys == {D1: 0.10, d3: 0.15}
    back = [order("O9", "u7", "delivered", at(D1, 9))]  # and back: D3 has no order any more
    write_set(lake, S3, orders=back)
    result = run_set(lake, S3, dynamo, dynamo.settings)
    assert result["dates"] == [D1, d3]
    assert (result["order_kpis"].deleted, result["category_kpis"].deleted) == (1, 1)
    assert d3 not in kpis.read_kpis(lake, "order_kpis").column("order_date").to_pylist()
    assert d3 not in kpis.read_kpis(lake, "category_kpis").column("order_date").to_pylist()
    for name in NAMES:
        assert kpis.dynamodb_mismatches(dynamo, lake, name, dynamo_table(dynamo, name)) == []
    assert kpis.revenue_mismatches(lake, [D1, D2, d3]) == []


def test_dynamodb_items_have_the_seeds_keys_and_decimal_numbers(lake: Lake, dynamo: AwsClients) -> None:
    first_set(lake)
    run_set(lake, S1, dynamo, dynamo.settings)
    raw = dynamo.dynamodb.get_item(TableName=dynamo.settings.order_kpis_table, Key={"order_date": {"S": "2025-03-01"}})
    item_ = raw["Item"]
    assert item_["total_orders"] == {"N": "5"}
    assert item_["updated_by_set"] == {"S": S1}
    cat = dynamo.dynamodb.get_item(
        TableName=dynamo.settings.category_kpis_table,
        Key={"category": {"S": "toys"}, "order_date": {"S": "2025-03-01"}},
    )["Item"]
    assert (cat["daily_revenue"], cat["avg_order_value"]) == ({"N": "0.25"}, {"N": "0.13"})


def test_reconciliation_finds_what_differs(lake: Lake, dynamo: AwsClients) -> None:
    first_set(lake)
    run_set(lake, S1, dynamo, dynamo.settings)
    order_table, category_table = dynamo.settings.order_kpis_table, dynamo.settings.category_kpis_table
    # DynamoDB: one item changed, one deleted, one extra
    dynamo.dynamodb.update_item(
        TableName=order_table,
        Key={"order_date": {"S": "2025-03-01"}},
        UpdateExpression="SET total_revenue = :v",
        ExpressionAttributeValues={":v": {"N": "1"}},
    )
    dynamo.dynamodb.delete_item(TableName=order_table, Key={"order_date": {"S": "2025-03-02"}})
    dynamo.dynamodb.put_item(
        TableName=order_table, Item={"order_date": {"S": "2025-03-09"}, "total_orders": {"N": "1"}}
    )
    problems = kpis.dynamodb_mismatches(dynamo, lake, "order_kpis", order_table)
    assert problems == [
        "order_kpis order_date=2025-03-02: in Delta, missing from DynamoDB " + order_table,
        "order_kpis order_date=2025-03-09: in DynamoDB " + order_table + ", not in Delta",
        "order_kpis order_date=2025-03-01: total_revenue is Decimal('1') in DynamoDB, Decimal('120.4') in Delta",
    ]
    assert kpis.dynamodb_mismatches(dynamo, lake, "order_kpis", order_table, [D1]) == problems[2:]
    assert kpis.dynamodb_mismatches(dynamo, lake, "category_kpis", category_table) == []
    # Delta: a wrong order revenue and a category row that no longer adds up
    wrong = kpis.read_kpis(lake, "order_kpis", [D2]).to_pylist()
    wrong[0]["total_revenue"] = 37.77  # silver says 37.76
    kpis.merge_kpis(
        lake, "order_kpis", arrow.Table.from_pylist(wrong, schema=arrow_schema("order_kpis", contract="kpis"))
    )
    problems = kpis.revenue_mismatches(lake, [D1, D2])
    assert len(problems) == 1
    assert problems[0] == "2025-03-02: order_kpis.total_revenue 37.77 but silver's sold items sum to 37.76"
    kpis.merge_kpis(lake, "order_kpis", kpis.compute_kpis(lake, [D2], S1).order)
    categories = kpis.read_kpis(lake, "category_kpis", [D1]).to_pylist()
    categories[0]["daily_revenue"] += 1
    kpis.merge_kpis(
        lake,
        "category_kpis",
        arrow.Table.from_pylist(categories, schema=arrow_schema("category_kpis", contract="kpis")),
    )
    problems = kpis.revenue_mismatches(lake, [D1, D2])
    assert len(problems) == 1
    assert "category_kpis.daily_revenue adds up to" in problems[0]
    # a date with silver orders but no KPI row
    DeltaTable(lake.uri(kpi_table("order_kpis"))).delete("order_date = CAST('2025-03-01' AS DATE)")
    assert "2025-03-01: silver has orders but order_kpis has no row" in kpis.revenue_mismatches(lake, [D1])


# --- Delta on S3 ---------------------------------------------------------------------------------


@pytest.fixture
def s3_lake(aws: AwsClients) -> Lake:
    aws.s3.create_bucket(Bucket="kpi-lake")
    return Lake.open("s3://kpi-lake/lake", aws.settings)


def test_delta_on_s3(s3_lake: Lake, aws: AwsClients) -> None:
    settings = aws.settings
    first_set(s3_lake)
    computed = kpis.compute_kpis(s3_lake, kpis.touched_dates(s3_lake, S1), S1)
    first = kpis.merge_kpis(s3_lake, "order_kpis", computed.order, [D1, D2], settings)
    second = kpis.merge_kpis(s3_lake, "order_kpis", computed.order, [D1, D2], settings)
    assert (first.inserted, first.committed) == (2, True)
    assert (second.inserted, second.updated, second.unchanged, second.committed) == (0, 0, 2, False)
    assert kpis.read_kpis(s3_lake, "order_kpis", aws=settings).equals(computed.order)
    keys = [o["Key"] for o in aws.s3.list_objects_v2(Bucket="kpi-lake", Prefix="lake/kpis/order_kpis/")["Contents"]]
    assert "lake/kpis/order_kpis/_delta_log/00000000000000000000.json" in keys
    # a late file changes one date: the merge commits a second version on S3
    write_set(s3_lake, S2, order_items=[item("O1", "P0003", "delivered", 9.99)])
    late = kpis.compute_kpis(s3_lake, kpis.touched_dates(s3_lake, S2), S2)
    third = kpis.merge_kpis(s3_lake, "order_kpis", late.order, late.dates, settings)
    assert (third.updated, third.version) == (1, 1)
    assert kpis.read_kpis(s3_lake, "order_kpis", [D1], settings).column("total_revenue").to_pylist() == [130.39]


def test_a_writer_that_loses_a_commit_race_on_s3_fails_instead_of_overwriting(s3_lake: Lake, aws: AwsClients) -> None:
    """delta-rs commits with a conditional put on S3 (the moto server honours If-None-Match): the
    writer that read an older version is refused, so the first writer's commit is never lost."""
    first_set(s3_lake)
    computed = kpis.compute_kpis(s3_lake, [D1, D2], S1)
    kpis.merge_kpis(s3_lake, "order_kpis", computed.order, aws=aws.settings)
    uri, options = s3_lake.uri(kpi_table("order_kpis")), storage_options(s3_lake, aws.settings)
    stale = DeltaTable(uri, storage_options=options)  # read at version 0
    changed = computed.order.to_pylist()
    changed[0]["total_orders"] = 99
    winner = kpis.merge_kpis(
        s3_lake, "order_kpis", arrow.Table.from_pylist(changed, schema=computed.order.schema), aws=aws.settings
    )
    assert (winner.updated, winner.version) == (1, 1)
    with pytest.raises(CommitFailedError):
        stale.merge(
            computed.order, "t.order_date = s.order_date", source_alias="s", target_alias="t"
        ).when_matched_update_all().execute()
    assert kpis.read_kpis(s3_lake, "order_kpis", [D1], aws.settings).column("total_orders").to_pylist() == [99]


# --- DynamoDB retries ----------------------------------------------------------------------------


def many_rows(n: int) -> arrow.Table:
    start = date(2024, 1, 1)
    rows = [
        {
            "order_date": start + timedelta(days=i),
            "total_orders": i + 1,
            "total_revenue": i + 0.5,
            "total_items_sold": i,
            "return_rate": 0.0,
            "unique_customers": 1,
            "updated_by_set": S1,
        }
        for i in range(n)
    ]
    return arrow.Table.from_pylist(rows, schema=arrow_schema("order_kpis", contract="kpis"))


def test_unprocessed_items_are_retried(dynamo: AwsClients) -> None:
    """moto never leaves items unprocessed, so a write_batch in front of the real one plays DynamoDB
    leaving the last 5 of each batch unprocessed twice; the third try writes them."""
    table = dynamo.settings.order_kpis_table
    calls: list[int] = []

    def flaky(table_name: str, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        calls.append(len(requests))
        left = requests[-5:] if len(calls) <= 2 else []
        written = requests[: len(requests) - len(left)]
        if written:
            dynamo.dynamodb.batch_write_item(RequestItems={table_name: written})  # type: ignore[dict-item]
        return left

    rows = many_rows(30)
    stats = push_kpis(dynamo, table, rows, write_batch=flaky, backoff_seconds=0.001)
    assert calls == [25, 5, 5, 5]  # first batch, its 5 unprocessed, again, then the second batch
    assert (stats.items, stats.batches, stats.retried) == (30, 4, 10)
    assert len(kpis.read_items(dynamo, table)) == 30


def test_items_left_unprocessed_after_three_retries_fail_loudly(dynamo: AwsClients) -> None:
    table = dynamo.settings.order_kpis_table
    calls: list[int] = []

    def stuck(table_name: str, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        calls.append(len(requests))
        stored = [r for r in requests if r["PutRequest"]["Item"]["order_date"]["S"] != "2024-01-03"]
        if stored:
            dynamo.dynamodb.batch_write_item(RequestItems={table_name: stored})  # type: ignore[dict-item]
        return [r for r in requests if r not in stored]

    with pytest.raises(KpiPushError) as failure:
        push_kpis(dynamo, table, many_rows(30), write_batch=stuck, backoff_seconds=0.001)
    assert calls == [25, 1, 1, 1, 5]  # 1 try + 3 retries of the stuck item, then the next batch all the same
    message = str(failure.value)
    assert "1 of 30 KPI items not written after 3 retries" in message
    assert "order_date=2024-01-03" in message
    assert failure.value.keys == [{"order_date": "2024-01-03"}]
    assert len(kpis.read_items(dynamo, table)) == 29


@pytest.fixture
def proxy(moto_server: MotoServer, dynamo: AwsClients) -> Iterator[tuple[FaultProxy, AwsClients]]:
    with FaultProxy(moto_server.endpoint_url, seed=3) as fault_proxy:
        via = dynamo.settings.model_copy(update={"aws_endpoint_url": fault_proxy.url})
        yield fault_proxy, AwsClients(via, attempts=1)  # no botocore retries: ours are what is tested


def test_throttled_batches_are_retried_through_the_fault_proxy(
    proxy: tuple[FaultProxy, AwsClients], dynamo: AwsClients
) -> None:
    fault_proxy, via = proxy
    table = dynamo.settings.order_kpis_table
    fault_proxy.throttle(only="dynamodb:BatchWriteItem", count=2)
    stats = push_kpis(via, table, many_rows(30), backoff_seconds=0.001)
    assert fault_proxy.stats.injected["throttle dynamodb:BatchWriteItem"] == 2
    assert (stats.batches, stats.retried) == (4, 25 * 2)
    assert "ProvisionedThroughputExceededException" in stats.retry_reasons[0]
    assert len(kpis.read_items(dynamo, table)) == 30


def test_a_batch_throttled_on_every_retry_fails_naming_its_keys(
    proxy: tuple[FaultProxy, AwsClients], dynamo: AwsClients
) -> None:
    fault_proxy, via = proxy
    table = dynamo.settings.order_kpis_table
    fault_proxy.throttle(only="dynamodb:BatchWriteItem", count=4)  # the first batch: 1 try + 3 retries
    with pytest.raises(KpiPushError) as failure:
        push_kpis(via, table, many_rows(30), backoff_seconds=0.001)
    assert "25 of 30 KPI items not written after 3 retries (ProvisionedThroughputExceededException" in str(
        failure.value
    )
    assert failure.value.keys[0] == {"order_date": "2024-01-01"}
    assert len(kpis.read_items(dynamo, table)) == 5  # the second batch was still written
