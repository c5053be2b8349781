"""The dashboard's figures: SQL over the gold marts in an in-memory DuckDB, never a write to the lake.

The marts' day files (``gold/sales_performance/day=D/data.parquet``,
``gold/items_category_performance/day=D/data.parquet``) are listed through the lake's filesystem
(``Lake.fs``), so a local folder and S3 read the same way without DuckDB extensions (those are
downloaded at first use, and downloads may not be reachable). Each file is read with pyarrow once
and kept until its modification time or size changes; the tables are registered in a fresh
in-memory DuckDB per page (a connection serves one thread), with external access off, so no
query can read or write a file. Every figure is one SQL query there.

Money stays ``Decimal`` from the marts' decimal columns to the page (``money()``), never a float,
so the page agrees with the marts to the cent. The average ticket of a range is computed in whole
cents with integer arithmetic, rounded half up, because DuckDB divides decimals as doubles.

No Dash here: this module is the data layer the page's callbacks and the tests call.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

import duckdb
import pyarrow as arrow
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from cart_aws.settings import AwsSettings
from cart_lakehouse.filedrop.layout import kpi_table
from cart_lakehouse.lake import Lake
from cart_lakehouse.layout import GOLD_TABLES

SALES = "sales_performance"
ITEMS = "items_category_performance"
MARTS = (SALES, ITEMS)
DEFAULT_DAYS = 30  # the page opens on the last 30 days that have data
TOP_PRODUCTS = 10
FILEDROP_ROWS = 20
Grain = Literal["hour", "day"]
INSTALLMENT_BUCKETS = (
    ("1", "installments_1"),
    ("2-3", "installments_2_3"),
    ("4-6", "installments_4_6"),
    ("7-12", "installments_7_12"),
    ("13-24", "installments_13_24"),
)
# round(amount / n, 2), half up, exactly: integer cents (DuckDB's decimal division yields a double)
_PER_CENT = (
    "CREATE MACRO per_cent(amount, n) AS CASE WHEN n > 0 THEN ((amount * 100)::HUGEINT * 2 + n) // (2 * n) * 0.01 END"
)


def money(value: Decimal | None) -> str:
    """How the page writes an amount: two decimals from the Decimal itself ("–" for none)."""
    return "–" if value is None else f"{value:.2f}"


def mart_location(model: str) -> str:
    """Where a mart's day folders live under the lake root (``cart_lakehouse.layout``)."""
    table = GOLD_TABLES.get(model)
    return table.location if table is not None else f"gold/{model}"


def day_of(path: str) -> date | None:
    """The day of a file under a ``day=YYYY-MM-DD`` folder (None for any other file)."""
    for part in path.split("/"):
        if part.startswith("day="):
            try:
                return date.fromisoformat(part[4:])
            except ValueError:
                return None
    return None


@dataclass(frozen=True)
class Filters:
    """What the page asks for: whole days ``start``..``end`` (inclusive), a grain, categories (none: all)."""

    start: date
    end: date
    grain: Grain = "day"
    categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class Kpis:
    revenue: Decimal
    purchases: int
    average_ticket: Decimal | None
    new_buyers: int
    returning_buyers: int


@dataclass(frozen=True)
class Point:
    """One period of the revenue chart (``series``: "all", or a category when categories are chosen)."""

    period: datetime
    series: str
    revenue: Decimal
    purchases: int
    new_buyers: int | None = None
    returning_buyers: int | None = None
    revenue_7d_avg: float | None = None


@dataclass(frozen=True)
class CategoryRow:
    category: str
    revenue: Decimal
    units: int
    share: float


@dataclass(frozen=True)
class ProductRow:
    product_id: str
    product_name: str
    category: str
    revenue: Decimal
    units: int


@dataclass(frozen=True)
class InstallmentsRow:
    bucket: str
    purchases: int
    share: float


@dataclass(frozen=True)
class FiledropRow:
    order_date: date
    category: str
    daily_revenue: Decimal
    avg_order_value: Decimal
    avg_return_rate: float


@dataclass(frozen=True)
class Filedrop:
    """The file drop's category KPIs for the page; ``note`` says when they are not the range's."""

    rows: list[FiledropRow]
    note: str | None = None


@dataclass(frozen=True)
class Page:
    filters: Filters
    kpis: Kpis
    series: list[Point]  # the revenue chart: all categories at the grain, or per chosen category and day
    buyers: list[Point]  # all categories at the grain (the marts keep buyers per period only)
    installments: list[InstallmentsRow]
    top_categories: list[CategoryRow]
    top_products: list[ProductRow]
    filedrop: Filedrop | None  # None: no file-drop KPI table in the lake
    notes: list[str] = field(default_factory=list)


@dataclass
class _Cached:
    stamp: tuple[int, int]  # modification time (ns) and size when read
    table: arrow.Table


class Marts:
    """The marts of one lake, read on demand and kept while their files are unchanged."""

    def __init__(self, lake: Lake, aws: AwsSettings | None = None) -> None:
        self.lake = lake
        self.aws = aws
        self._lock = threading.Lock()
        self._files: dict[str, _Cached] = {}
        self._tables: dict[str, tuple[tuple[Any, ...], arrow.Table]] = {}
        self._kpis: tuple[int, arrow.Table] | None = None

    # --- reading ----------------------------------------------------------------------------------

    def _listing(self, model: str) -> list[pafs.FileInfo]:
        selector = pafs.FileSelector(self.lake.path(mart_location(model)), recursive=True, allow_not_found=True)
        return sorted(
            (
                info
                for info in self.lake.fs.get_file_info(selector)
                if info.type == pafs.FileType.File and info.path.endswith(".parquet") and day_of(info.path)
            ),
            key=lambda info: info.path,
        )

    def days(self) -> list[date]:
        """Days that have a sales_performance file, oldest first."""
        return sorted({d for info in self._listing(SALES) if (d := day_of(info.path))})

    def has_data(self) -> bool:
        return bool(self._listing(SALES))

    def default_range(self) -> tuple[date, date] | None:
        """The last ``DEFAULT_DAYS`` days up to the newest day with data (None: no data yet)."""
        days = self.days()
        if not days:
            return None
        return max(days[0], days[-1] - timedelta(days=DEFAULT_DAYS - 1)), days[-1]

    def _read(self, info: pafs.FileInfo) -> arrow.Table:
        stamp = (int(info.mtime_ns or 0), int(info.size or 0))
        cached = self._files.get(info.path)
        if cached is None or cached.stamp != stamp:
            cached = _Cached(stamp, pq.read_table(info.path, filesystem=self.lake.fs))
            self._files[info.path] = cached
        return cached.table

    def table(self, model: str) -> arrow.Table | None:
        """Every day file of a mart as one Arrow table, timestamps as naive UTC (None: no files)."""
        listing = self._listing(model)
        if not listing:
            return None
        key = tuple((info.path, info.mtime_ns, info.size) for info in listing)
        with self._lock:
            cached = self._tables.get(model)
            if cached is not None and cached[0] == key:
                return cached[1]
            tables = [self._read(info) for info in listing]
            live = {info.path for info in listing}
            for path in [p for p in self._files if p not in live and mart_location(model) in p]:
                del self._files[path]  # a day file that was replaced or removed
            combined = _naive_timestamps(arrow.concat_tables(tables, promote_options="default"))
            self._tables[model] = (key, combined)
            return combined

    def category_kpis(self) -> arrow.Table | None:
        """The file drop's ``kpis/category_kpis`` Delta table (None: the file drop never loaded a set)."""
        from deltalake import DeltaTable  # loaded when the page first asks

        uri, options = self.lake.uri(kpi_table("category_kpis")), {}
        if not self.lake.is_local:  # kpi_tables pulls in pandera (seconds): only for S3's options
            from cart_lakehouse.filedrop.kpi_tables import storage_options

            options = storage_options(self.lake, self.aws)
        if not DeltaTable.is_deltatable(uri, storage_options=options):
            return None
        delta = DeltaTable(uri, storage_options=options)
        with self._lock:
            if self._kpis is None or self._kpis[0] != delta.version():
                self._kpis = (delta.version(), arrow.table(delta.to_pyarrow_table()))
            return self._kpis[1]

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A fresh in-memory DuckDB with the marts as ``sales`` and ``items`` (and ``category_kpis``
        when the file drop has loaded), unable to touch a file."""
        con = duckdb.connect(":memory:", config={"enable_external_access": False})
        con.execute(_PER_CENT)
        for name, model in (("sales", SALES), ("items", ITEMS)):
            table = self.table(model)
            if table is None:
                table = _EMPTY[model]
            con.register(name, table)
        return con

    # --- figures ------------------------------------------------------------------------------

    def categories(self) -> list[str]:
        """Every category the items mart has seen, for the filter."""
        with self.connect() as con:
            return [row[0] for row in con.execute("SELECT DISTINCT category FROM items ORDER BY 1").fetchall()]

    def page(self, filters: Filters) -> Page:
        """Every figure of the page for ``filters``: one DuckDB connection, one query per figure."""
        with self.connect() as con:
            notes: list[str] = []
            kpis = _kpis(con, filters)
            if filters.categories:
                notes.append(
                    "New and returning buyers and the installments mix are for all categories: "
                    "the marts keep them per period, not per category."
                )
                if filters.grain == "hour":
                    notes.append("Revenue per category is kept per day: the chart shows days.")
            overall = _series(con, filters)
            return Page(
                filters=filters,
                kpis=kpis,
                series=_category_series(con, filters) if filters.categories else overall,
                buyers=overall,
                installments=_installments(con, filters),
                top_categories=_top_categories(con, filters),
                top_products=_top_products(con, filters),
                filedrop=self._filedrop(filters),
                notes=notes,
            )

    def _filedrop(self, filters: Filters) -> Filedrop | None:
        table = self.category_kpis()
        if table is None:
            return None
        con = duckdb.connect(":memory:", config={"enable_external_access": False})
        try:
            con.register("category_kpis", table)
            return _filedrop(con, filters)
        finally:
            con.close()


def _naive_timestamps(table: arrow.Table) -> arrow.Table:
    """UTC timestamps without their zone: DuckDB then needs no time-zone extension (ICU)."""
    for i, column in enumerate(table.schema):
        if arrow.types.is_timestamp(column.type) and column.type.tz is not None:
            naive = arrow.timestamp(column.type.unit)
            table = table.set_column(i, arrow.field(column.name, naive, column.nullable), pc.cast(table[i], naive))
    return table


def _empty(model: str) -> arrow.Table:
    """An empty mart typed by its contract, so the queries run (and return nothing) on an empty lake."""
    from cart_lakehouse.checks.schemas import arrow_schema  # pandera: only for an empty lake

    return _naive_timestamps(arrow_schema(model, contract="analytics").empty_table())


class _EmptyTables(dict[str, arrow.Table]):
    def __missing__(self, model: str) -> arrow.Table:
        self[model] = _empty(model)
        return self[model]


_EMPTY = _EmptyTables()


def _where(filters: Filters, day: str = "day") -> tuple[str, dict[str, Any]]:
    """The day range (and the category filter, if any) as a WHERE clause with its parameters."""
    params: dict[str, Any] = {"start": filters.start, "end": filters.end}
    clause = f"{day} BETWEEN $start AND $end"
    if filters.categories:
        clause += " AND list_contains($categories, category)"
        params["categories"] = list(filters.categories)
    return clause, params


def _kpis(con: duckdb.DuckDBPyConnection, filters: Filters) -> Kpis:
    # buyers are counted per period of the grain (a buyer returning on two days counts twice)
    buyers = con.execute(
        """
        SELECT coalesce(sum(revenue), 0)::DECIMAL(38, 2), coalesce(sum(purchases), 0)::BIGINT,
               per_cent(sum(revenue), sum(purchases)),
               coalesce(sum(new_buyers), 0)::BIGINT, coalesce(sum(returning_buyers), 0)::BIGINT
        FROM sales WHERE grain = $grain AND day BETWEEN $start AND $end
        """,
        {"grain": filters.grain, "start": filters.start, "end": filters.end},
    ).fetchone()
    assert buyers is not None  # an aggregate without GROUP BY always returns a row
    revenue, purchases, ticket, new, returning = buyers
    if filters.categories:
        where, params = _where(filters)
        row = con.execute(
            f"""
            SELECT coalesce(sum(revenue), 0)::DECIMAL(38, 2), coalesce(sum(units), 0)::BIGINT,
                   per_cent(sum(revenue), sum(units))
            FROM items WHERE {where}
            """,
            params,
        ).fetchone()
        assert row is not None
        revenue, purchases, ticket = row
    return Kpis(revenue, purchases, ticket, new, returning)


_DAYS = "SELECT unnest(generate_series($start::TIMESTAMP, $end::TIMESTAMP, INTERVAL 1 DAY)) AS period"


def _category_series(con: duckdb.DuckDBPyConnection, filters: Filters) -> list[Point]:
    """Revenue per chosen category and day (the items mart is daily), days without sales at 0."""
    rows = con.execute(
        f"""
        WITH periods AS ({_DAYS}), chosen AS (SELECT unnest($categories) AS category)
        SELECT p.period, c.category, coalesce(sum(i.revenue), 0)::DECIMAL(38, 2),
               coalesce(sum(i.units), 0)::BIGINT
        FROM periods p CROSS JOIN chosen c
        LEFT JOIN items i ON i.day = p.period::DATE AND i.category = c.category
        GROUP BY ALL ORDER BY c.category, p.period
        """,
        {"start": filters.start, "end": filters.end, "categories": list(filters.categories)},
    ).fetchall()
    return [Point(period, category, revenue, units) for period, category, revenue, units in rows]


def _series(con: duckdb.DuckDBPyConnection, filters: Filters) -> list[Point]:
    """Every period of the grain in the range, all categories, with its buyers."""
    if filters.grain == "hour":  # hours without purchases have no row in the mart: 0 on the chart
        periods = """
            SELECT unnest(generate_series($start::TIMESTAMP,
                least($end::TIMESTAMP + INTERVAL 23 HOUR,
                      coalesce((SELECT max(period_start) FROM sales WHERE grain = 'hour'), $start::TIMESTAMP)),
                INTERVAL 1 HOUR)) AS period
        """
    else:
        periods = _DAYS
    rows = con.execute(
        f"""
        WITH periods AS ({periods})
        SELECT p.period, coalesce(s.revenue, 0)::DECIMAL(38, 2), coalesce(s.purchases, 0)::BIGINT,
               coalesce(s.new_buyers, 0)::BIGINT, coalesce(s.returning_buyers, 0)::BIGINT, s.revenue_7d_avg
        FROM periods p LEFT JOIN sales s ON s.grain = $grain AND s.period_start = p.period
        ORDER BY p.period
        """,
        {"start": filters.start, "end": filters.end, "grain": filters.grain},
    ).fetchall()
    return [Point(period, "all", revenue, n, new, ret, avg) for period, revenue, n, new, ret, avg in rows]


def _installments(con: duckdb.DuckDBPyConnection, filters: Filters) -> list[InstallmentsRow]:
    sums = ", ".join(f"coalesce(sum({column}), 0)::BIGINT" for _, column in INSTALLMENT_BUCKETS)
    row = con.execute(
        f"SELECT {sums} FROM sales WHERE grain = 'day' AND day BETWEEN $start AND $end",
        {"start": filters.start, "end": filters.end},
    ).fetchone()
    assert row is not None
    total = sum(row)
    return [
        InstallmentsRow(label, count, count / total if total else 0.0)
        for (label, _), count in zip(INSTALLMENT_BUCKETS, row, strict=True)
    ]


def _top_categories(con: duckdb.DuckDBPyConnection, filters: Filters) -> list[CategoryRow]:
    where, params = _where(filters)
    rows = con.execute(
        f"""
        SELECT category, sum(revenue)::DECIMAL(38, 2) AS revenue, sum(units)::BIGINT,
               coalesce(sum(revenue) / nullif(sum(sum(revenue)) OVER (), 0), 0)::DOUBLE
        FROM items WHERE {where}
        GROUP BY category ORDER BY revenue DESC, category
        """,
        params,
    ).fetchall()
    return [CategoryRow(*row) for row in rows]


def _top_products(con: duckdb.DuckDBPyConnection, filters: Filters) -> list[ProductRow]:
    where, params = _where(filters)
    rows = con.execute(
        f"""
        SELECT product_id, coalesce(arg_max(product_name, day), product_id), arg_max(category, day),
               sum(revenue)::DECIMAL(38, 2) AS revenue, sum(units)::BIGINT
        FROM items WHERE {where}
        GROUP BY product_id ORDER BY revenue DESC, product_id LIMIT {TOP_PRODUCTS}
        """,
        params,
    ).fetchall()
    return [ProductRow(*row) for row in rows]


def _filedrop(con: duckdb.DuckDBPyConnection, filters: Filters) -> Filedrop:
    """The range's file-drop KPIs; when it holds none of the range's dates, its latest three dates."""
    where, params = _where(filters, day="order_date")
    columns = "order_date, category, daily_revenue::DECIMAL(18, 2), avg_order_value::DECIMAL(18, 2), avg_return_rate"
    order = f"ORDER BY order_date DESC, daily_revenue DESC, category LIMIT {FILEDROP_ROWS}"
    rows = con.execute(f"SELECT {columns} FROM category_kpis WHERE {where} {order}", params).fetchall()
    if rows:
        return Filedrop([FiledropRow(*row) for row in rows])
    span = con.execute("SELECT min(order_date), max(order_date) FROM category_kpis").fetchone()
    if span is None or span[0] is None:
        return Filedrop([], "The file-drop KPI table is empty.")
    latest = con.execute(
        f"SELECT {columns} FROM category_kpis WHERE order_date IN "
        f"(SELECT DISTINCT order_date FROM category_kpis ORDER BY order_date DESC LIMIT 3) {order}"
    ).fetchall()
    return Filedrop(
        [FiledropRow(*row) for row in latest],
        f"No file-drop KPIs in the range chosen; they hold order dates {span[0]}..{span[1]}. The latest are shown.",
    )


def filters_of(
    start: str | date | None,
    end: str | date | None,
    grain: str | None,
    categories: Sequence[str] | None,
    fallback: tuple[date, date] | None,
) -> Filters | None:
    """The page's inputs as Filters (dates as the date picker sends them); None when there is no range."""

    def as_date(value: str | date | None) -> date | None:
        if value is None or value == "":
            return None
        if isinstance(value, date):
            return value
        return date.fromisoformat(value[:10])

    first, last = as_date(start), as_date(end)
    if first is None or last is None:
        if fallback is None:
            return None
        first, last = first or fallback[0], last or fallback[1]
    if first > last:
        first, last = last, first
    chosen: Grain = "hour" if grain == "hour" else "day"
    return Filters(first, last, chosen, tuple(sorted(set(categories or ()))))
