"""Reconciliation checks per partition: nothing appears or disappears between layers.

- silver ← bronze: every bronze line is a silver row, a quarantined row, or an older copy of a
  purchase that silver holds (deduplicated): ``bronze = silver + quarantined + superseded``.
- gold ← silver: gold revenue equals silver revenue, per hour (``sales_hourly``) and per day
  (``sales_by_category_daily``, ``buyer_daily``); the star's fact has silver's rows and revenue per
  hour; the marts' revenue and purchases (units) per hour and per day. One factory
  (``reconciliation_check``) compares a table's figures (sums of a column, or rows
  counted) with silver's, period by period.
- star ← reference: the current versions of ``dim_product`` (SCD2, built in SQL) are exactly the
  products dimension ``reference/products`` is built from (``jobs/products.py``), so the two
  implementations of "the latest usable row per product" cannot drift apart.

Counts are recomputed from the files in the lake, independently of what the assets reported.
"""

import io
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import pyarrow as arrow
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.json as arrow_json
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetKey,
    MetadataValue,
    asset_check,
)

from cart_lakehouse.checks import hour_dirs, read_window
from cart_lakehouse.hours import period_keys
from cart_lakehouse.jobs.products import dimension
from cart_lakehouse.lake import Lake
from cart_lakehouse.layout import GOLD_TABLES, PRODUCTS_TABLE, SILVER, GoldTable, bronze_file
from cart_lakehouse.layout import SILVER_QUARANTINE as QUARANTINE
from cart_lakehouse.partitions import Hour, hourly_partitions, hours_between, whole_days
from cart_lakehouse.resources import LakeResource
from contracts import load_contract


@dataclass(frozen=True)
class LayerCounts:
    bronze: int
    silver: int
    quarantined: int
    superseded: int

    @property
    def unaccounted(self) -> int:
        return self.bronze - self.silver - self.quarantined - self.superseded


def bronze_lines(lake: Lake, hour: Hour) -> list[str]:
    """The non-blank lines of an hour's bronze file (none when bronze has no file)."""
    relative = bronze_file(hour)
    if not lake.exists(relative):
        return []
    return [line for line in lake.read_bytes(relative).decode(errors="replace").splitlines() if line.strip()]


def _purchase_id(line: str) -> str | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    purchase_id = value.get("purchase_id") if isinstance(value, dict) else None
    return purchase_id if isinstance(purchase_id, str) else None


_ID_ONLY = arrow_json.ParseOptions(
    explicit_schema=arrow.schema([arrow.field("purchase_id", arrow.string())]), unexpected_field_behavior="ignore"
)


def purchase_ids(lines: Sequence[str]) -> list[str | None]:
    """The ``purchase_id`` of each line (None: not a JSON object with a string id).

    Arrow's JSON reader parses the lines in C++ (1M lines in 1.2 s, where ``json.loads`` per line
    took 2.9 s); a line it refuses (not an object, an id that is not a string) sends the
    whole batch through the per-line parser, which answers for each line on its own."""
    if not lines:
        return []
    try:
        table = arrow_json.read_json(io.BytesIO("\n".join(lines).encode()), parse_options=_ID_ONLY)
    except (arrow.ArrowInvalid, arrow.ArrowTypeError):
        return [_purchase_id(line) for line in lines]
    ids: list[str | None] = table.column("purchase_id").to_pylist()
    return ids if len(ids) == len(lines) else [_purchase_id(line) for line in lines]


def count_hour(lake: Lake, hour: Hour) -> LayerCounts:
    """Account for every bronze line of an hour from the files alone.

    The quarantine keeps each broken line verbatim (``raw``): those lines are taken out of bronze,
    and the rest must be exactly silver's purchases, each once or more (``superseded``: the older
    copies deduplication removed). A silver id that bronze does not have, or a remaining line whose
    id silver lacks, leaves the difference in ``unaccounted``.
    """
    lines = bronze_lines(lake, hour)
    silver = read_window(lake, SILVER, [hour.path])
    quarantine = read_window(lake, QUARANTINE, [hour.path])
    silver_ids = set(silver.column("purchase_id").to_pylist()) if silver is not None else set()
    remaining = Counter(lines)
    remaining.subtract(Counter(quarantine.column("raw").to_pylist()) if quarantine is not None else Counter())
    left = [line for line, n in remaining.items() if n > 0]
    remaining_ids: Counter[str | None] = Counter()
    for line, purchase_id in zip(left, purchase_ids(left), strict=True):
        remaining_ids[purchase_id] += remaining[line]  # two different lines of one id both count
    kept = sum(n for i, n in remaining_ids.items() if i in silver_ids)
    matched = len(silver_ids & set(remaining_ids))
    return LayerCounts(
        bronze=len(lines),
        silver=silver.num_rows if silver is not None else 0,
        quarantined=quarantine.num_rows if quarantine is not None else 0,
        superseded=kept - matched,
    )


def count_layers(lake: Lake, hours: Sequence[Hour]) -> LayerCounts:
    counts = [count_hour(lake, h) for h in hours]
    return LayerCounts(*(sum(getattr(c, f) for c in counts) for f in ("bronze", "silver", "quarantined", "superseded")))


def column_total(table: Any, column: str) -> Decimal:
    """sum(column) of an Arrow table (None: no table) as money, to the cent."""
    if table is None or table.num_rows == 0:
        return Decimal("0.00")
    total = pc.sum(table.column(column)).as_py()
    return Decimal(str(total or 0)).quantize(Decimal("0.01"))


def revenue_by(lake: Lake, location: str, dirs: Sequence[str], column: str) -> Decimal:
    return column_total(read_window(lake, location, dirs), column)


def _window(context: AssetCheckExecutionContext) -> list[Hour]:
    window = context.partition_time_window
    return hours_between(window.start, window.end)


@asset_check(
    asset=AssetKey(["silver", "purchases"]),
    name="reconciles_with_bronze",
    blocking=True,
    partitions_def=hourly_partitions,
    description="bronze rows = silver rows + quarantined rows + superseded duplicates, for the partition.",
)
def silver_reconciles_with_bronze(context: AssetCheckExecutionContext, lake: LakeResource) -> AssetCheckResult:
    counts = count_layers(lake.lake(), _window(context))
    return AssetCheckResult(
        passed=counts.unaccounted == 0,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "bronze_rows": counts.bronze,
            "silver_rows": counts.silver,
            "quarantined_rows": counts.quarantined,
            "superseded_duplicates": counts.superseded,
            "unaccounted": counts.unaccounted,
        },
        description=None
        if counts.unaccounted == 0
        else f"{counts.unaccounted:+d} bronze rows unaccounted for (in neither silver nor the quarantine)",
    )


def read_files(lake: Lake, files: Sequence[str]) -> Any:
    present = [lake.path(f) for f in files if lake.exists(f)]
    return ds.dataset(present, filesystem=lake.fs, format="parquet").to_table() if present else None


@dataclass(frozen=True)
class Measure:
    """A figure compared with silver: the sum of a column of the table (None: its rows counted)
    against the sum of a column of silver (None: silver's rows counted)."""

    name: str
    column: str | None
    silver: str | None


def revenue(column: str) -> Measure:
    return Measure("revenue", column, "total_amount")


def purchases(column: str | None) -> Measure:
    return Measure("purchases", column, None)


@dataclass(frozen=True)
class Part:
    """The rows of a table compared with silver per period: per ``hour`` of the partition, or per
    ``day`` it touches (all of silver's hours of each such day); ``key`` is the table's column
    holding the period, ``grain`` (optional) the value its ``grain`` column must have."""

    period: Literal["hour", "day"]
    key: str
    measures: tuple[Measure, ...]
    grain: str | None = None

    @property
    def label(self) -> str:
        return f"{self.grain} rows" if self.grain else f"per {self.period}"


def _period_keys(values: Any, period: str) -> Any:
    """An hour column as ``YYYY-MM-DDTHH`` (silver's ``ingest_hour``), a day column as ``YYYY-MM-DD``."""
    if arrow.types.is_timestamp(values.type):
        return period_keys(values, period, "%Y-%m-%dT%H" if period == "hour" else "%Y-%m-%d")
    return pc.cast(values, arrow.string())


def totals(table: Any, keys: Any, measures: Sequence[tuple[str, str | None]]) -> dict[str, dict[str, Decimal]]:
    """Per period key: each measure's sum (a column) or count (None), exactly (money to the cent)."""
    if table is None or table.num_rows == 0:
        return {}
    frame = arrow.table({"key": keys, **{name: table.column(c) for name, c in measures if c is not None}})
    aggregates = [(name, "sum") if c is not None else ("key", "count") for name, c in measures]
    grouped = frame.group_by("key").aggregate(aggregates).to_pylist()
    out: dict[str, dict[str, Decimal]] = {}
    for row in grouped:
        out[row["key"]] = {
            name: Decimal(str(row[f"{name}_sum"] if c is not None else row["key_count"])) for name, c in measures
        }
    return out


def reconcile(lake: Lake, table: GoldTable, part: Part, hours: Sequence[Hour]) -> dict[str, Any]:
    """The part's figures per period, in the table and in silver, and the periods where they differ."""
    silver_hours = whole_days(hours) if part.period == "day" else list(hours)
    data = read_files(lake, table.files(hours))
    if data is not None and part.grain is not None:
        data = data.filter(pc.equal(data.column("grain"), part.grain))
    gold = totals(
        data,
        None if data is None else _period_keys(data.column(part.key), part.period),
        [(m.name, m.column) for m in part.measures],
    )
    silver_data = read_window(lake, SILVER, hour_dirs(silver_hours))
    silver_keys = None
    if silver_data is not None:
        hour_keys = silver_data.column("ingest_hour")
        silver_keys = hour_keys if part.period == "hour" else pc.utf8_slice_codeunits(hour_keys, 0, 10)
    silver = totals(silver_data, silver_keys, [(m.name, m.silver) for m in part.measures])
    zero = {m.name: Decimal(0) for m in part.measures}
    differing = {
        key: {
            "table": {k: str(v) for k, v in gold.get(key, zero).items()},
            "silver": {k: str(v) for k, v in silver.get(key, zero).items()},
        }
        for key in sorted(set(gold) | set(silver))
        if gold.get(key, zero) != silver.get(key, zero)
    }
    return {
        "periods": len(set(gold) | set(silver)),
        **{m.name: str(sum((v[m.name] for v in gold.values()), Decimal(0))) for m in part.measures},
        **{f"silver_{m.name}": str(sum((v[m.name] for v in silver.values()), Decimal(0))) for m in part.measures},
        "differing": differing,
    }


def reconciliation_check(
    table: GoldTable, asset_key: AssetKey, name: str, parts: Sequence[Part], description: str
) -> AssetChecksDefinition:
    """A blocking check that the table's figures of the partition equal silver's, part by part and
    period by period (recounted from the files)."""

    @asset_check(
        asset=asset_key,
        name=name,
        blocking=True,
        partitions_def=hourly_partitions,
        description=description,
    )
    def _check(context: AssetCheckExecutionContext, lake: LakeResource) -> AssetCheckResult:
        the_lake, hours = lake.lake(), _window(context)
        results = {part.label: reconcile(the_lake, table, part, hours) for part in parts}
        differing = {label: r.pop("differing") for label, r in results.items()}
        bad = {label: d for label, d in differing.items() if d}
        metadata: dict[str, Any] = {}
        for label, result in results.items():
            prefix = "" if len(parts) == 1 else label.replace(" ", "_") + "_"
            metadata.update({f"{prefix}{k}": v for k, v in result.items()})
        if bad:
            metadata["differing_periods"] = MetadataValue.json(
                {label: dict(list(d.items())[:10]) for label, d in bad.items()}
            )
        return AssetCheckResult(
            passed=not bad,
            severity=AssetCheckSeverity.ERROR,
            metadata=metadata,
            description=None
            if not bad
            else "; ".join(
                f"{label}: {len(d)} period(s) differ from silver ({', '.join(list(d)[:3])})" for label, d in bad.items()
            ),
        )

    return _check


def gold_revenue_check(table: GoldTable, revenue_column: str) -> AssetChecksDefinition:
    """Gold revenue per hour of the partition (daily tables: per day it touches) equals silver's."""
    daily = table.kind == "daily"
    return reconciliation_check(
        table,
        AssetKey(["gold", table.model]),
        "revenue_matches_silver",
        [Part("day" if daily else "hour", "day" if daily else table.hour_column, (revenue(revenue_column),))],
        f"sum({revenue_column}) equals silver's sum(total_amount) for each "
        + ("day the partition touches (all of silver's hours of the day)." if daily else "hour of the partition."),
    )


fact_rows_match_silver = reconciliation_check(
    GOLD_TABLES["fact_purchases"],
    AssetKey(["star", "fact_purchases"]),
    "rows_match_silver",
    [Part("hour", "ingest_hour", (purchases(None), revenue("total_amount")))],
    "Per hour of the partition, the fact's rows and sum(total_amount) equal silver's: one fact row per purchase.",
)


@asset_check(
    asset=AssetKey(["star", "dim_product"]),
    name="current_matches_reference",
    blocking=True,
    partitions_def=hourly_partitions,
    description=(
        "The current version (is_current) of every product in dim_product equals the products dimension that "
        "reference/products is built from (the committed CSV, each product replaced by the file drop's latest row "
        "the contract accepts): the same products, names, brands, categories, departments and prices."
    ),
)
def dim_product_current_matches_reference(context: AssetCheckExecutionContext, lake: LakeResource) -> AssetCheckResult:
    the_lake = lake.lake()
    table = GOLD_TABLES["dim_product"]
    columns = [c.name for c in load_contract("lakehouse").columns(PRODUCTS_TABLE)]
    star = read_files(the_lake, table.files(_window(context)))
    current = (
        {}
        if star is None
        else {
            row["product_id"]: row
            for row in star.filter(pc.and_(star["is_current"], pc.not_equal(star["product_key"], "unknown")))
            .select(columns)
            .to_pylist()
        }
    )
    reference = {row["product_id"]: row for row in dimension(the_lake).table.select(columns).to_pylist()}
    missing = sorted(set(reference) - set(current))
    extra = sorted(set(current) - set(reference))
    differing = sorted(i for i in set(current) & set(reference) if current[i] != reference[i])
    passed = not (missing or extra or differing)
    metadata: dict[str, Any] = {
        "current_versions": len(current),
        "reference_products": len(reference),
        "missing_from_dim_product": len(missing),
        "not_in_reference": len(extra),
        "differing": len(differing),
    }
    if not passed:
        metadata["sample"] = MetadataValue.json(
            {
                "missing": missing[:5],
                "extra": extra[:5],
                "differing": [{"dim_product": current[i], "reference": reference[i]} for i in differing[:5]],
            }
        )
    return AssetCheckResult(
        passed=passed,
        severity=AssetCheckSeverity.ERROR,
        metadata=metadata,
        description=None
        if passed
        else f"dim_product's current versions differ from the products dimension: {len(missing)} missing, "
        f"{len(extra)} extra, {len(differing)} differing",
    )


sales_performance_matches_silver = reconciliation_check(
    GOLD_TABLES["sales_performance"],
    AssetKey(["gold", "sales_performance"]),
    "revenue_matches_silver",
    [
        Part("hour", "period_start", (revenue("revenue"), purchases("purchases")), grain="hour"),
        Part("day", "day", (revenue("revenue"), purchases("purchases")), grain="day"),
    ],
    "The hour rows' revenue and purchases equal silver's for each hour of the partition, and the day rows' for "
    "each day it touches (all of silver's hours of the day).",
)

items_category_performance_matches_silver = reconciliation_check(
    GOLD_TABLES["items_category_performance"],
    AssetKey(["gold", "items_category_performance"]),
    "revenue_matches_silver",
    [Part("day", "day", (revenue("revenue"), purchases("units")))],
    "Per day the partition touches, sum(revenue) and sum(units) equal silver's revenue and purchases "
    "(all of silver's hours of the day; a purchase is one item).",
)


reconciliation_checks = [
    silver_reconciles_with_bronze,
    gold_revenue_check(GOLD_TABLES["sales_hourly"], "revenue"),
    gold_revenue_check(GOLD_TABLES["sales_by_category_daily"], "revenue"),
    gold_revenue_check(GOLD_TABLES["buyer_daily"], "spend"),
    fact_rows_match_silver,
    dim_product_current_matches_reference,
    sales_performance_matches_silver,
    items_category_performance_matches_silver,
]
