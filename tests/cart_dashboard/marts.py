"""Mart files for the dashboard's tests, without Spark or dbt: purchases drawn with a fixed seed,
aggregated here into ``gold/sales_performance`` and ``gold/items_category_performance`` day files
typed by the analytics contract (``arrow_schema``), as the marts' publish writes them. The same
purchases give the tests their independent expectations (``expected``)."""

from __future__ import annotations

import csv
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pyarrow as arrow
import pyarrow.parquet as pq

from cart_dashboard.data import ITEMS, SALES, mart_location
from cart_lakehouse.checks.schemas import arrow_schema
from cart_lakehouse.lake import Lake

CENT = Decimal("0.01")
PRODUCTS_CSV = Path(__file__).resolve().parents[2] / "cart_lakehouse" / "data" / "products.csv"
BUCKETS = ((1, 1), (2, 3), (4, 6), (7, 12), (13, 24))


@dataclass(frozen=True)
class Product:
    product_id: str
    product_name: str
    category: str
    department: str


@dataclass(frozen=True)
class Purchase:
    hour: datetime
    buyer_id: str
    product: Product
    amount: Decimal
    installments: int

    @property
    def day(self) -> date:
        return self.hour.date()


def products() -> list[Product]:
    with PRODUCTS_CSV.open() as source:
        return [
            Product(r["product_id"], r["product_name"], r["category"], r["department"]) for r in csv.DictReader(source)
        ]


def draw(
    first_hour: datetime, hours: int, per_hour: int, seed: int, buyers: int = 400, skip_every: int = 0
) -> list[Purchase]:
    """``per_hour`` purchases (give or take a third) in each of ``hours`` hours from ``first_hour``,
    from a pool of returning buyers; every ``skip_every``-th hour has none (a gap the page fills)."""
    rng = random.Random(seed)
    catalog = products()[:60]
    out = []
    for h in range(hours):
        if skip_every and h % skip_every == skip_every - 1:
            continue
        hour = first_hour + timedelta(hours=h)
        for _ in range(rng.randint(per_hour * 2 // 3, per_hour * 4 // 3)):
            out.append(
                Purchase(
                    hour=hour,
                    buyer_id=f"B{rng.randrange(buyers):06d}",
                    product=rng.choice(catalog),
                    amount=Decimal(rng.randint(100, 250_000)) * CENT,
                    installments=rng.choice([1, 1, 1, 2, 3, 4, 6, 10, 12, 18, 24]),
                )
            )
    return out


def per_cent(amount: Decimal, n: int) -> Decimal:
    return (amount / n).quantize(CENT, rounding=ROUND_HALF_UP)


def _bucket(installments: int) -> int:
    return next(i for i, (low, high) in enumerate(BUCKETS) if low <= installments <= high)


def _sales_rows(purchases: Sequence[Purchase]) -> list[dict[str, object]]:
    first: dict[str, datetime] = {}
    for p in sorted(purchases, key=lambda p: p.hour):
        first.setdefault(p.buyer_id, p.hour)
    periods: dict[tuple[str, datetime], list[Purchase]] = defaultdict(list)
    for p in purchases:
        periods[("hour", p.hour)].append(p)
        periods[("day", datetime.combine(p.day, datetime.min.time(), UTC))].append(p)
    revenue = {key: sum((p.amount for p in rows), Decimal(0)) for key, rows in periods.items()}
    count = {key: len(rows) for key, rows in periods.items()}
    out = []
    for (grain, start), rows in periods.items():
        buyers = {p.buyer_id for p in rows}
        end = start + (timedelta(hours=1) if grain == "hour" else timedelta(days=1))
        new = {b for b in buyers if start <= first[b] < end}
        prev = (grain, start - timedelta(days=1))
        week = [(grain, start - timedelta(days=d)) for d in range(7)]
        mix = [0] * len(BUCKETS)
        for p in rows:
            mix[_bucket(p.installments)] += 1
        out.append(
            {
                "grain": grain,
                "period_start": start,
                "day": start.date(),
                "revenue": revenue[(grain, start)],
                "purchases": len(rows),
                "average_ticket": per_cent(revenue[(grain, start)], len(rows)),
                "buyers": len(buyers),
                "new_buyers": len(new),
                "returning_buyers": len(buyers) - len(new),
                "installment_share": sum(p.installments > 1 for p in rows) / len(rows),
                "average_installments": sum(p.installments for p in rows) / len(rows),
                **{
                    f"installments_{lo}" + (f"_{hi}" if hi != lo else ""): n
                    for (lo, hi), n in zip(BUCKETS, mix, strict=True)
                },
                "revenue_prev": revenue.get(prev, Decimal(0)),
                "purchases_prev": count.get(prev, 0),
                "revenue_dod_pct": None,
                "purchases_dod_pct": None,
                "revenue_7d_avg": float(sum((revenue.get(k, Decimal(0)) for k in week), Decimal(0))) / 7,
                "purchases_7d_avg": sum(count.get(k, 0) for k in week) / 7,
            }
        )
    return out


def _items_rows(purchases: Sequence[Purchase]) -> list[dict[str, object]]:
    groups: dict[tuple[date, Product], list[Purchase]] = defaultdict(list)
    for p in purchases:
        groups[(p.day, p.product)].append(p)
    category_revenue: dict[tuple[date, str], Decimal] = defaultdict(Decimal)
    day_revenue: dict[date, Decimal] = defaultdict(Decimal)
    for (day, product), rows in groups.items():
        amount = sum((p.amount for p in rows), Decimal(0))
        category_revenue[(day, product.category)] += amount
        day_revenue[day] += amount
    out = []
    for (day, product), rows in groups.items():
        amount = sum((p.amount for p in rows), Decimal(0))
        out.append(
            {
                "day": day,
                "category": product.category,
                "product_id": product.product_id,
                "department": product.department,
                "product_name": product.product_name,
                "revenue": amount,
                "units": len(rows),
                "category_revenue": category_revenue[(day, product.category)],
                "share_of_category": float(amount / category_revenue[(day, product.category)]),
                "share_of_day": float(amount / day_revenue[day]),
                "rank_in_category": 1,  # not shown by the page
                "category_rank": 1,
                "return_rate": None,
            }
        )
    return out


def write_marts(lake: Lake, purchases: Sequence[Purchase]) -> None:
    """One contract-typed file per day and mart, as gold publishes them."""
    for model, rows in ((SALES, _sales_rows(purchases)), (ITEMS, _items_rows(purchases))):
        schema = arrow_schema(model, contract="analytics")
        by_day: dict[date, list[dict[str, object]]] = defaultdict(list)
        for row in rows:
            by_day[row["day"]].append(row)  # type: ignore[index]
        for day, day_rows in by_day.items():
            path = f"{mart_location(model)}/day={day.isoformat()}/data.parquet"
            lake.fs.create_dir(lake.path(path).rsplit("/", 1)[0], recursive=True)
            pq.write_table(arrow.Table.from_pylist(day_rows, schema=schema), lake.path(path))


@dataclass(frozen=True)
class Expected:
    revenue: Decimal
    purchases: int
    average_ticket: Decimal | None
    new_buyers: int
    returning_buyers: int
    categories: dict[str, tuple[Decimal, int]]
    products: dict[str, tuple[Decimal, int]]
    installments: list[int]


def expected(
    purchases: Iterable[Purchase], start: date, end: date, grain: str = "day", categories: Sequence[str] = ()
) -> Expected:
    """The page's figures computed from the purchases themselves (Decimal, half-up cents)."""
    every = sorted(purchases, key=lambda p: p.hour)
    first: dict[str, datetime] = {}
    for p in every:
        first.setdefault(p.buyer_id, p.hour)
    in_range = [p for p in every if start <= p.day <= end]
    chosen = [p for p in in_range if not categories or p.product.category in categories]
    revenue = sum((p.amount for p in chosen), Decimal(0))

    def period(p: Purchase) -> object:
        return p.hour if grain == "hour" else p.day

    buyers_per_period = {(period(p), p.buyer_id) for p in in_range}
    new = {b for _, b in buyers_per_period if start <= first[b].date() <= end}
    returning = sum(1 for per, b in buyers_per_period if per != (first[b] if grain == "hour" else first[b].date()))
    by_category: dict[str, tuple[Decimal, int]] = defaultdict(lambda: (Decimal(0), 0))
    by_product: dict[str, tuple[Decimal, int]] = defaultdict(lambda: (Decimal(0), 0))
    for p in chosen:
        amount, units = by_category[p.product.category]
        by_category[p.product.category] = (amount + p.amount, units + 1)
        amount, units = by_product[p.product.product_id]
        by_product[p.product.product_id] = (amount + p.amount, units + 1)
    mix = [0] * len(BUCKETS)
    for p in in_range:
        mix[_bucket(p.installments)] += 1
    return Expected(
        revenue=revenue,
        purchases=len(chosen),
        average_ticket=per_cent(revenue, len(chosen)) if chosen else None,
        new_buyers=len(new),
        returning_buyers=returning,
        categories=dict(by_category),
        products=dict(by_product),
        installments=mix,
    )
