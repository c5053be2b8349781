"""The file drop's daily KPIs: computed from silver, exactly as ``contracts/kpis.odcs.yaml`` defines them.

Silver holds one folder per set; a key's latest set wins (set ids sort by the time the set was
formed). A set recomputes every ``order_date`` it touches from *all* latest silver rows of that
date, so the result depends only on silver, never on which sets came before: a re-dropped set
gives the same rows, a late file changes exactly the dates it touches. DuckDB does the work over
Arrow tables read with the lake's own filesystem (a local folder or S3), so no DuckDB extension is
needed to reach S3. Money is summed as decimals and rounded half up to the cent, so the KPIs do not
depend on the order floating-point sums happen in.

Writing the rows to Delta and DynamoDB is ``kpi_tables``; the reconciliations the asset checks run
are at the end of this module.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import duckdb
import pyarrow as arrow
import pyarrow.compute as pc
import pyarrow.dataset as ds

from cart_aws.aws import AwsClients
from cart_aws.settings import AwsSettings
from cart_lakehouse.checks.schemas import arrow_schema
from cart_lakehouse.filedrop import store
from cart_lakehouse.filedrop.kpi_tables import (
    KPI_KEYS,
    KpiPushError,
    MergeStats,
    PushStats,
    as_item,
    exactly,
    merge_kpis,
    push_kpis,
    read_items,
    read_kpis,
)
from cart_lakehouse.filedrop.layout import TABLES
from cart_lakehouse.lake import Lake
from contracts import load_contract

NOT_SOLD = ("cancelled", "returned")  # every other status is revenue
RETURNED = "returned"
UNKNOWN_CATEGORY = "unknown"  # an item whose product no file described (or described without a category)
_NEEDED = {  # the columns the KPIs read, per silver table
    "orders": ("order_id", "user_id", "status", "created_at"),
    "order_items": ("order_id", "product_id", "status", "sale_price"),
    "products": ("id", "category"),
}
# the columns touched_dates reads: fewer than _NEEDED, as it runs in the KPI step, each check and the archive
_DATE_COLUMNS: dict[str, tuple[str, ...]] = {
    "orders": ("order_id", "created_at"),
    "order_items": ("order_id", "product_id"),
    "products": ("id", "category"),
}
_SAMPLE = 5

__all__ = [  # the KPI step's whole interface; the Delta and DynamoDB half lives in kpi_tables
    "KpiPushError",
    "Kpis",
    "MergeStats",
    "PushStats",
    "compute_kpis",
    "dynamodb_mismatches",
    "latest",
    "merge_kpis",
    "push_kpis",
    "read_items",
    "read_kpis",
    "reconcile_revenue",
    "revenue_mismatches",
    "silver_revenue",
    "touched_dates",
]


@dataclass(frozen=True)
class Kpis:
    """The KPI rows of some order dates, and what could not be counted in them."""

    category: arrow.Table  # arrow_schema("category_kpis", contract="kpis")
    order: arrow.Table  # arrow_schema("order_kpis", contract="kpis")
    dates: tuple[date, ...]
    # Order items (all of silver) whose order no set described: without an order there is no
    # order_date, so they are in no KPI. The set check should have stopped them; shown, never hidden.
    items_without_order: int
    items_without_order_sample: tuple[tuple[str, str], ...]  # (order_id, product_id) of a few of them
    unknown_product_items: int  # items of these dates whose product no file described ('unknown')


def _silver(lake: Lake, table: str, columns: tuple[str, ...] | None = None) -> arrow.Table:
    """Every silver row of ``table`` (all sets) with its ``set_id``; an empty table when none."""
    names = list(columns or arrow_schema(table, contract="filedrop").names)
    paths = [lake.path(p) for ps in store.set_files(lake, "silver", table).values() for p in ps]
    if not paths:
        schema = arrow_schema(table, contract="filedrop")
        return (
            arrow.schema([schema.field(n) for n in names]).append(arrow.field("set_id", arrow.string())).empty_table()
        )
    dataset = ds.dataset(paths, filesystem=lake.fs, format="parquet", partitioning="hive")
    return dataset.to_table(columns=[*names, "set_id"])


def _latest_sql(relation: str, table: str) -> str:
    key = ", ".join(load_contract("filedrop").primary_key(table))
    return f"SELECT * FROM {relation} QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY set_id DESC) = 1"


def _connect(lake: Lake, columns: dict[str, tuple[str, ...]]) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection holding, per silver table, ``<table>_all``: every set's rows (the
    queries deduplicate only what they read)."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")  # created_at::DATE is then the UTC date, whatever the machine's zone
    for table, cols in columns.items():
        con.register(f"{table}_all", _silver(lake, table, cols))
    return con


def latest(lake: Lake, table: str, columns: tuple[str, ...] | None = None) -> arrow.Table | None:
    """Silver's ``table`` across every set, the latest set winning per primary key (with its
    ``set_id``); None when no set has the table. ``columns``: only these (the key among them)."""
    if not store.set_files(lake, "silver", table):
        return None
    with duckdb.connect() as con:
        con.register("rows", _silver(lake, table, columns))
        return con.sql(_latest_sql("rows", table)).to_arrow_table()


def touched_dates(lake: Lake, set_id: str) -> list[date]:
    """The order dates a set changes, sorted: those of its orders (every version of them in silver,
    so an order moved to another day recomputes the day it left), those of the orders its items
    belong to, and those of the items of products whose category it changed (or first gave).
    Every version of an order or item is looked at, not only the latest: a date too many is
    recomputed to the same rows, which the merge leaves alone, and no window over silver is needed."""
    if not any(set_id in store.set_files(lake, "silver", table) for table in TABLES):
        return []  # the set wrote nothing to silver (a re-drop of the latest set)
    with _connect(lake, _DATE_COLUMNS) as con:
        rows = con.execute(
            """
            WITH their_orders AS (
                SELECT order_id FROM orders_all WHERE set_id = $set
                UNION SELECT order_id FROM order_items_all WHERE set_id = $set
            ),
            recategorized AS (  -- products whose category this set's row changes
                SELECT mine.id FROM (SELECT id, coalesce(category, $unknown) AS category
                                     FROM products_all WHERE set_id = $set) AS mine
                LEFT JOIN (SELECT id, coalesce(category, $unknown) AS category FROM products_all
                           WHERE set_id < $set
                           QUALIFY row_number() OVER (PARTITION BY id ORDER BY set_id DESC) = 1) AS before
                    USING (id)
                WHERE mine.category IS DISTINCT FROM coalesce(before.category, $unknown)
            )
            SELECT created_at::DATE FROM orders_all WHERE order_id IN (SELECT order_id FROM their_orders)
            UNION
            SELECT o.created_at::DATE FROM order_items_all AS i JOIN orders_all AS o USING (order_id)
            WHERE i.product_id IN (SELECT id FROM recategorized)
            ORDER BY 1
            """,
            {"set": set_id, "unknown": UNKNOWN_CATEGORY},
        ).fetchall()
    return [row[0] for row in rows]


# Only the rows of the dates are deduplicated: every version of the orders that ever had one of
# the dates (the latest decides where an order is now), then the items of the orders that do.
_DATED = f"""
CREATE TEMP TABLE dated AS  -- the latest orders of the dates, with their order_date
WITH candidates AS (
    SELECT * FROM orders_all WHERE order_id IN (
        SELECT order_id FROM orders_all WHERE created_at::DATE IN (SELECT unnest($dates::DATE[])))
)
SELECT order_id, user_id, status, created_at::DATE AS order_date FROM ({_latest_sql("candidates", "orders")})
WHERE created_at::DATE IN (SELECT unnest($dates::DATE[]))
"""
_ITEMS = f"""
CREATE TEMP TABLE items AS  -- their latest items, with the order's date and the product's category
WITH candidates AS (SELECT * FROM order_items_all WHERE order_id IN (SELECT order_id FROM dated)),
products AS ({_latest_sql("products_all", "products")})
SELECT o.order_date, i.order_id, i.status, i.sale_price, p.id IS NULL AS no_product,
       coalesce(p.category, $unknown) AS category, i.status NOT IN ('cancelled', 'returned') AS sold
FROM ({_latest_sql("candidates", "order_items")}) AS i JOIN dated AS o USING (order_id)
LEFT JOIN products AS p ON p.id = i.product_id
"""
# An item whose order no set described, in any version: it has no order_date.
_UNDATED = """
SELECT DISTINCT order_id, product_id FROM order_items_all
WHERE order_id NOT IN (SELECT order_id FROM orders_all) ORDER BY ALL
"""
# Revenue in whole cents: the exact decimal sum of the prices rounded half up (DuckDB rounds
# DECIMAL half away from zero; revenue is never negative), so cents / 100 is the double nearest
# the rounded amount. avg_order_value rounds revenue / orders half up in integer arithmetic.
_CENTS = "coalesce(round(sum(sale_price::DECIMAL(38, 9)) FILTER (WHERE sold), 2) * 100, 0)::BIGINT"
_CATEGORY = f"""
WITH c AS (
    SELECT category, order_date, {_CENTS} AS cents, count(DISTINCT order_id) FILTER (WHERE sold) AS sold_orders,
           count(*) FILTER (WHERE status = 'returned') AS returned, count(*) AS n
    FROM items GROUP BY category, order_date
)
SELECT category, order_date, cents / 100 AS daily_revenue,
       CASE WHEN sold_orders = 0 THEN 0.0 ELSE ((2 * cents + sold_orders) // (2 * sold_orders)) / 100 END
           AS avg_order_value,
       returned / n AS avg_return_rate, $set AS updated_by_set
FROM c ORDER BY category, order_date
"""
_ORDER = f"""
WITH o AS (
    SELECT order_date, count(*) AS total_orders, count(*) FILTER (WHERE status = 'returned') AS returned,
           count(DISTINCT user_id) AS unique_customers
    FROM dated GROUP BY order_date
), i AS (
    SELECT order_date, {_CENTS} AS cents, count(*) FILTER (WHERE sold) AS sold FROM items GROUP BY order_date
)
SELECT order_date, total_orders, coalesce(cents, 0) / 100 AS total_revenue, coalesce(sold, 0) AS total_items_sold,
       returned / total_orders AS return_rate, unique_customers, $set AS updated_by_set
FROM o LEFT JOIN i USING (order_date) ORDER BY order_date
"""


def compute_kpis(lake: Lake, dates: list[date], set_id: str) -> Kpis:
    """Both KPI tables' rows for ``dates``, from all latest silver rows of those dates, each
    row marked ``updated_by_set=set_id``. A date without orders has no row."""
    days = sorted(set(dates))
    with _connect(lake, _NEEDED) as con:
        con.execute(_DATED, {"dates": days})
        con.execute(_ITEMS, {"unknown": UNKNOWN_CATEGORY})
        category = con.sql(_CATEGORY, params={"set": set_id}).to_arrow_table()
        order = con.sql(_ORDER, params={"set": set_id}).to_arrow_table()
        undated = con.execute(_UNDATED).fetchall()
        row = con.execute("SELECT count(*) FROM items WHERE no_product").fetchone()
    return Kpis(
        category=exactly(category, "category_kpis"),
        order=exactly(order, "order_kpis"),
        dates=tuple(days),
        items_without_order=len(undated),
        items_without_order_sample=tuple((str(a), str(b)) for a, b in undated[:_SAMPLE]),
        unknown_product_items=int(row[0]) if row else 0,
    )


# --- reconciliation (the asset checks) ----------------------------------------------------------


def silver_revenue(lake: Lake, dates: list[date]) -> dict[date, Decimal]:
    """Revenue per order date summed from latest silver with Arrow (not the KPI query): the
    exact decimal sum of the sold items' prices of each date's orders, unrounded."""
    return _silver_revenue(lake, sorted(set(dates)))[0]


def _silver_revenue(lake: Lake, days: list[date]) -> tuple[dict[date, Decimal], set[date]]:
    """``silver_revenue`` of ``days``, and which of them have silver orders."""
    orders = latest(lake, "orders", ("order_id", "created_at"))
    if orders is None:
        return {}, set()
    dated = orders.select(["order_id"]).append_column("order_date", pc.cast(orders["created_at"], arrow.date32()))
    dated = dated.filter(pc.is_in(dated["order_date"], arrow.array(days, arrow.date32())))
    with_orders = set(pc.unique(dated["order_date"]).to_pylist())
    items = latest(lake, "order_items", ("order_id", "product_id", "status", "sale_price"))
    if items is None:
        return {}, with_orders
    sold = items.filter(pc.invert(pc.is_in(items["status"], arrow.array(NOT_SOLD))))
    joined = sold.select(["order_id", "sale_price"]).join(dated, "order_id", join_type="inner")
    # a price occurs on many items: each distinct (date, price) is made exact once, times its count
    prices = joined.group_by(["order_date", "sale_price"]).aggregate([("sale_price", "count")])
    totals: dict[date, Decimal] = defaultdict(Decimal)
    for day, price, count in zip(
        prices["order_date"].to_pylist(),
        prices["sale_price"].to_pylist(),
        prices["sale_price_count"].to_pylist(),
        strict=True,
    ):
        if price is not None:
            totals[day] += Decimal(repr(price)) * count
    return dict(totals), with_orders


def revenue_mismatches(lake: Lake, dates: list[date], aws: AwsSettings | None = None) -> list[str]:
    """Where revenue does not reconcile, per date: ``order_kpis.total_revenue`` must be silver's
    revenue rounded to the cent (within half a cent of the exact sum), and the categories'
    ``daily_revenue`` must add up to silver's revenue within half a cent per category (each is
    rounded on its own). A date with silver orders needs an order_kpis row; empty list: all agree."""
    return reconcile_revenue(lake, dates, aws)[0]


def reconcile_revenue(
    lake: Lake, dates: list[date], aws: AwsSettings | None = None
) -> tuple[list[str], dict[date, Decimal]]:
    """``revenue_mismatches`` and the ``silver_revenue`` it compared with, from one read of silver."""
    days = sorted(set(dates))
    if not days:  # nothing to compare (a set that touched no date: a re-drop, products alone...)
        return [], {}
    silver, with_orders = _silver_revenue(lake, days)
    order_rows = {r["order_date"]: r for r in read_kpis(lake, "order_kpis", days, aws).to_pylist()}
    by_category: dict[date, list[float]] = defaultdict(list)
    for r in read_kpis(lake, "category_kpis", days, aws).to_pylist():
        by_category[r["order_date"]].append(r["daily_revenue"])
    problems = []
    half_cent = Decimal("0.005")
    for day in days:
        exact = silver.get(day, Decimal(0))
        row = order_rows.get(day)
        if row is None:
            if day in with_orders:
                problems.append(f"{day}: silver has orders but order_kpis has no row")
            elif by_category.get(day):
                problems.append(f"{day}: category_kpis has rows but no order_kpis row and no silver orders")
            continue
        if day not in with_orders:
            problems.append(f"{day}: order_kpis has a row but silver has no order that day")
        total = Decimal(repr(row["total_revenue"]))
        if abs(total - exact) > half_cent:
            problems.append(f"{day}: order_kpis.total_revenue {total} but silver's sold items sum to {exact}")
        categories = by_category.get(day, [])
        summed = sum((Decimal(repr(v)) for v in categories), Decimal(0))
        if abs(summed - exact) > half_cent * max(len(categories), 1):
            problems.append(
                f"{day}: category_kpis.daily_revenue adds up to {summed} over {len(categories)} categories "
                f"but silver's sold items sum to {exact}"
            )
    return problems, silver


def dynamodb_mismatches(
    clients: AwsClients,
    lake: Lake,
    name: str,
    table_name: str,
    dates: list[date] | None = None,
    aws: AwsSettings | None = None,
) -> list[str]:
    """Where DynamoDB's ``table_name`` differs from the Delta table ``name`` (of ``dates``, or all):
    an item missing, an attribute differing, or an item Delta does not have. Empty: equal."""
    if dates is not None and not dates:
        return []
    key = KPI_KEYS[name]
    expected = {
        tuple(row[k] for k in key): row for row in (as_item(r) for r in read_kpis(lake, name, dates, aws).to_pylist())
    }
    wanted = None if dates is None else {d.isoformat() for d in dates}
    actual = {
        tuple(item[k] for k in key): item
        for item in read_items(clients, table_name)
        if wanted is None or item.get("order_date") in wanted
    }
    problems = []
    for k in sorted(expected.keys() - actual.keys()):
        problems.append(f"{name} {_show(key, k)}: in Delta, missing from DynamoDB {table_name}")
    for k in sorted(actual.keys() - expected.keys()):
        problems.append(f"{name} {_show(key, k)}: in DynamoDB {table_name}, not in Delta")
    for k in sorted(expected.keys() & actual.keys()):
        want, got = expected[k], actual[k]
        for column in sorted(want.keys() | got.keys()):
            if want.get(column) != got.get(column):
                where = f"{name} {_show(key, k)}: {column}"
                problems.append(f"{where} is {got.get(column)!r} in DynamoDB, {want.get(column)!r} in Delta")
    return problems


def _show(key: tuple[str, ...], values: tuple[object, ...]) -> str:
    return ", ".join(f"{k}={v}" for k, v in zip(key, values, strict=True))
