"""Where each table lives under the lake root: the one place the lake's paths are spelled.

Hourly tables are partitioned as ``<table>/year=YYYY/month=MM/day=DD/hour=HH/`` (``Hour.path``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Literal

from cart_lakehouse.hours import Hour

BRONZE = "bronze/purchases"
SILVER = "silver/purchases"
SILVER_QUARANTINE = "silver/purchases_quarantine"
PRODUCTS_FILE = "reference/products/products.parquet"
PRODUCTS_TABLE = "products"  # the products dimension's schema object in the lakehouse contract
GOLD = "gold"
STAR = "silver/star"  # the star schema (dbt models/star), built with gold
DLQ_QUARANTINE = "quarantine/dlq"


def bronze_file(hour: Hour) -> str:
    """The lake-relative path of one hour's bronze file (one JSON object per line)."""
    return f"{BRONZE}/{hour.path}/purchases.jsonl"


Kind = Literal["hourly", "daily", "whole"]


@dataclass(frozen=True)
class GoldTable:
    """Where a dbt model's rows live: ``<prefix>/<model>/``. Gold tables and marts sit under
    ``gold/``, the star schema under ``silver/star/`` (the star schema is silver's model of the
    purchases; the marts are built on it).

    ``kind`` says how a table is split into files:
    - ``hourly``: one ``day=YYYY-MM-DD/part-HH.parquet`` per hour, so an hour is replaced without
      touching its day's other hours (and the table's ``hour`` column does not clash with the
      ``day`` partition key);
    - ``daily``: one ``day=YYYY-MM-DD/data.parquet`` per day (a day rebuilt whole);
    - ``whole``: one ``data.parquet`` for the whole table, rewritten by every run (small
      dimensions, rebuilt from all their inputs).
    ``follows_days``: how many days after a day hold rows computed from it (the marts' moving
    figures), so that a run also rewrites those of them already published (``assets/gold.py``).
    """

    model: str
    kind: Kind
    prefix: str = GOLD
    contract: str = "lakehouse"  # the contract (contracts/<contract>.odcs.yaml) with the model's schema object
    hour_column: str = "hour"  # an hourly table's column holding the start of the row's hour
    follows_days: int = 0

    @property
    def location(self) -> str:
        return f"{self.prefix}/{self.model}"

    @property
    def partition_keys(self) -> tuple[str, ...]:
        """The table's partition keys in the catalog (a ``whole`` table has none)."""
        return () if self.kind == "whole" else ("day",)

    def day_dir(self, day: date) -> str:
        return f"{self.location}/day={day.isoformat()}"

    def day_file(self, day: date) -> str:
        """A daily table's file of ``day``."""
        return f"{self.day_dir(day)}/data.parquet"

    def file(self, hour: Hour) -> str:
        """The file holding ``hour``'s rows (a daily table: its whole day; a whole table: all of it)."""
        if self.kind == "whole":
            return f"{self.location}/data.parquet"
        if self.kind == "daily":
            return self.day_file(hour.start.date())
        return f"{self.day_dir(hour.start.date())}/part-{hour.start:%H}.parquet"

    def files(self, hours: Sequence[Hour]) -> list[str]:
        """The files a partition window of hours covers (daily tables: the whole days it touches)."""
        return list(dict.fromkeys(self.file(h) for h in hours))


GOLD_TABLES = {
    t.model: t
    for t in (
        GoldTable("sales_hourly", "hourly"),
        GoldTable("sales_by_category_daily", "daily"),
        GoldTable("buyer_daily", "daily"),
        GoldTable("fact_purchases", "hourly", prefix=STAR, contract="analytics", hour_column="ingest_hour"),
        GoldTable("dim_buyer", "whole", prefix=STAR, contract="analytics"),
        GoldTable("dim_product", "whole", prefix=STAR, contract="analytics"),
        GoldTable("dim_date", "whole", prefix=STAR, contract="analytics"),
        GoldTable("sales_performance", "daily", contract="analytics", follows_days=6),
        GoldTable("items_category_performance", "daily", contract="analytics"),
    )
}
