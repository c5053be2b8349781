"""Where each table lives under the lake root: the one place the lake's paths are spelled.

Hourly tables are partitioned as ``<table>/year=YYYY/month=MM/day=DD/hour=HH/`` (``Hour.path``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from cart_lakehouse.partitions import Hour

BRONZE = "bronze/purchases"
SILVER = "silver/purchases"
SILVER_QUARANTINE = "silver/purchases_quarantine"
PRODUCTS_FILE = "reference/products/products.parquet"
GOLD = "gold"
DLQ_QUARANTINE = "quarantine/dlq"


def bronze_file(hour: Hour) -> str:
    """The lake-relative path of one hour's bronze file (one JSON object per line)."""
    return f"{BRONZE}/{hour.path}/purchases.jsonl"


@dataclass(frozen=True)
class GoldTable:
    """Where a gold model's rows live: ``gold/<model>/day=YYYY-MM-DD/``, the one partition key of
    every gold table in the catalog. Daily tables hold one ``data.parquet`` per day; hourly tables
    one ``part-HH.parquet`` per hour, so an hour is replaced without touching its day's other hours
    (and the table's ``hour`` column does not clash with a partition key of the same name)."""

    model: str
    daily: bool

    @property
    def location(self) -> str:
        return f"{GOLD}/{self.model}"

    def day_dir(self, day: date) -> str:
        return f"{self.location}/day={day.isoformat()}"

    def file(self, hour: Hour) -> str:
        """The file holding ``hour``'s rows (for a daily table: its whole day)."""
        name = "data.parquet" if self.daily else f"part-{hour.start:%H}.parquet"
        return f"{self.day_dir(hour.start.date())}/{name}"

    def files(self, hours: Sequence[Hour]) -> list[str]:
        """The files a partition window of hours covers (daily tables: the whole days it touches)."""
        return list(dict.fromkeys(self.file(h) for h in hours))


GOLD_TABLES = {
    t.model: t
    for t in (
        GoldTable("sales_hourly", daily=False),
        GoldTable("sales_by_category_daily", daily=True),
        GoldTable("buyer_daily", daily=True),
    )
}
