"""Silver purchases with PySpark: bronze lines checked against the purchases contract, typed,
deduplicated and enriched with the products dimension; lines that break the contract are quarantined.

``build_silver(spark, lake, hours)`` reads the bronze files of all the hours in one Spark job and
replaces exactly those hours' partitions of ``silver/purchases`` and ``silver/purchases_quarantine``.
Every bronze line ends in exactly one place, so per hour
``bronze_rows = silver_rows + quarantined + duplicates_removed``:

- quarantined: not JSON, not an object, an unknown field, a column breaking a rule of the purchases
  contract (every broken column is named in ``reason``), or a row of another hour than its file;
- duplicates_removed: a valid copy of a purchase_id that the same hour holds in a later valid copy
  (the latest ``received_at`` wins; ties go to the greatest raw line, so reruns pick the same row);
- silver: the rest, one row per purchase_id and hour.

Lines are parsed with ``try_parse_json`` into a VARIANT rather than ``from_json`` with a string
schema: the variant keeps each value's JSON type (the contract rejects ``"129.9"`` as an amount,
as the API does) and its exact decimal digits (``from_json`` passes JSON numbers through a double).
No Python UDF is involved, so executors need no Python.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import Column as SparkColumn
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from cart_lakehouse.hours import Hour
from cart_lakehouse.lake import Lake
from cart_lakehouse.layout import PRODUCTS_FILE, PRODUCTS_TABLE, SILVER, bronze_file
from cart_lakehouse.layout import SILVER_QUARANTINE as QUARANTINE
from cart_lakehouse.timings import Timings
from contracts import Column, load_contract

SILVER_TABLE = "silver_purchases"  # schema objects of the lakehouse contract
QUARANTINE_TABLE = "silver_purchases_quarantine"
PARTITION_COLUMNS = ("year", "month", "day", "hour")  # strings, zero-padded: the paths are Hour.path
UNKNOWN_CATEGORY = "unknown"

# Session settings silver's results depend on: dates and hours are UTC whatever the machine says,
# and timestamps are written as Parquet INT64 microseconds adjusted to UTC (Arrow: timestamp[us, UTC]).
SESSION_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
}

_HOUR_IN_PATH = r"year=(\d{4})/month=(\d{2})/day=(\d{2})/hour=(\d{2})/[^/]*$"
_TIME_ZONE = r"(Z|[+-]\d{2}:?\d{2})$"
# The JSON types each logical type accepts (as json_kind names them) and how a reason names them.
_EXPECTED_KINDS = {
    "string": (("string",), "a string"),
    "date": (("string",), "a string"),
    "timestamp": (("string",), "a string"),
    "integer": (("integer",), "an integer"),
    "number": (("integer", "number"), "a number"),
    "boolean": (("boolean",), "a boolean"),
}
_UNREADABLE = {
    "date": "not a date in {format} format",
    "timestamp": "not an ISO 8601 timestamp{zone}",
    "integer": "not an integer",
    "number": "not a finite decimal number",
}
_BOUNDS = (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<"))


# --- Rules derived from the contract -----------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One rule of a column: ``failed`` is true when a row breaks it, ``reason`` says why."""

    failed: SparkColumn
    reason: SparkColumn


def _kind(name: str) -> str:
    return f"_kind_{name}"


def _text(name: str) -> str:
    return f"_text_{name}"


def _read(name: str) -> str:
    return f"_read_{name}"


def json_kind(node: SparkColumn) -> SparkColumn:
    """The JSON type of a variant value in words (string, integer, number, ...); null when absent."""
    variant_type = F.schema_of_variant(node)
    return (
        F.when(node.isNull(), F.lit(None))
        .when(variant_type == "VOID", "null")
        .when(variant_type.rlike(r"^(TINYINT|SMALLINT|INT|BIGINT|DECIMAL\(\d+,0\))$"), "integer")
        .when(variant_type.rlike(r"^(DECIMAL|DOUBLE|FLOAT)"), "number")
        .otherwise(F.lower(F.regexp_extract(variant_type, r"^[A-Z]+", 0)))
    )


def reading(column: Column) -> SparkColumn:
    """The value of a column as the rules compare it (null when the text cannot be read as its type).

    Numbers are read as wide decimals so that range and decimal-place rules see the exact value.
    """
    text = F.col(_text(column.name))
    match column.logical_type:
        case "string":
            return text
        case "integer":
            return text.try_cast("decimal(38,0)")
        case "number":
            return text.try_cast("decimal(38,18)")
        case "date":
            return F.try_to_date(text, str(column.options.get("format", "yyyy-MM-dd")))
        case "timestamp":
            parsed = text.try_cast("timestamp")
            return F.when(text.rlike(_TIME_ZONE), parsed) if column.options.get("timezone") else parsed
        case "boolean":
            return F.when(text == "true", True).when(text == "false", False)
    raise ValueError(f"column {column.name!r}: logical type {column.logical_type!r} is not supported")


def _literal(column: Column, value: Any) -> SparkColumn:
    if column.logical_type == "date":
        return F.lit(value).cast("date")
    if column.logical_type in ("integer", "number"):
        return F.lit(str(value)).cast("decimal(38,18)")
    return F.lit(value)


def column_rules(column: Column, reference: str | None = None) -> list[Rule]:
    """The rules of one contract column, in the order they are tried (the first broken one is reported).

    Presence, JSON type, readability, then every option the contract sets (lengths, pattern, enum,
    bounds, multipleOf), that the value fits the physical type, and the ``maxDaysAfterReceipt``
    custom rule against ``reference`` (the receipt timestamp column).
    """
    name, o = column.name, column.options
    kind, text, value = F.col(_kind(name)), F.col(_text(name)), F.col(_read(name))

    def rule(failed: SparkColumn, reason: str | SparkColumn) -> Rule:
        return Rule(failed, F.concat(F.lit(f"{name}: "), reason if isinstance(reason, SparkColumn) else F.lit(reason)))

    rules = [rule(kind.isNull() | (kind == "null"), "required")] if column.required else []
    kinds, expected = _EXPECTED_KINDS[column.logical_type]
    rules.append(rule(~kind.isin(*kinds), F.concat(F.lit(f"expected {expected}, got "), kind)))
    if column.logical_type in _UNREADABLE:
        zone = " with a time zone" if o.get("timezone") else ""
        message = _UNREADABLE[column.logical_type].format(format=o.get("format", "yyyy-MM-dd"), zone=zone)
        rules.append(rule(value.isNull(), message))
    if "minLength" in o:
        rules.append(rule(F.length(text) < o["minLength"], f"shorter than {o['minLength']} characters"))
    if "maxLength" in o:
        rules.append(rule(F.length(text) > o["maxLength"], f"longer than {o['maxLength']} characters"))
    if "pattern" in o:
        rules.append(rule(~text.rlike(o["pattern"]), f"does not match {o['pattern']}"))
    if "enum" in column.custom:
        allowed = list(column.custom["enum"])
        rules.append(rule(~text.isin(*allowed), f"not one of {', '.join(allowed)}"))
    for option, operator in _BOUNDS:
        if option in o:
            bound = _literal(column, o[option])
            broken = {">=": value < bound, ">": value <= bound, "<=": value > bound, "<": value >= bound}[operator]
            rules.append(rule(broken, f"must be {operator} {o[option]}"))
    if "multipleOf" in o:
        rules.append(rule(value % _literal(column, o["multipleOf"]) != 0, f"not a multiple of {o['multipleOf']}"))
    if column.logical_type in ("integer", "number"):
        rules.append(rule(value.try_cast(column.physical_type).isNull(), f"does not fit {column.physical_type}"))
    if "maxDaysAfterReceipt" in column.custom and reference is not None:
        days = int(column.custom["maxDaysAfterReceipt"])
        latest = F.date_add(F.to_date(F.col(_read(reference))), days)
        rules.append(rule(value > latest, f"more than {days} day(s) after the day of receipt ({reference})"))
    return rules


def column_reason(column: Column, reference: str | None = None) -> SparkColumn:
    """The first rule of the column a row breaks, as ``"<column>: <why>"``; null when it keeps them all.

    An optional column that is absent or null is not checked further.
    """
    rules = column_rules(column, reference)
    if column.required:
        chain = F.when(rules[0].failed, rules[0].reason)
        rules = rules[1:]
    else:
        kind = F.col(_kind(column.name))
        chain = F.when(kind.isNull() | (kind == "null"), F.lit(None))
    for r in rules:
        chain = chain.when(r.failed, r.reason)
    return chain


def partition_rules() -> list[Rule]:
    """The row must belong to the hour of the bronze file it came from (the contract's partition)."""
    ingest_hour, received_at = F.col(_read("ingest_hour")), F.col(_read("received_at"))
    received_hour = F.date_format(received_at, "yyyy-MM-dd'T'HH")
    return [
        Rule(ingest_hour != F.col("_hour"), F.lit("ingest_hour: not the hour of its bronze partition")),
        Rule(received_hour != F.col("_hour"), F.lit("received_at: outside the hour of its bronze partition")),
    ]


# --- Results ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HourCounts:
    """What silver did with one hour of bronze."""

    hour: Hour
    bronze_rows: int = 0
    silver_rows: int = 0
    quarantined: int = 0
    duplicates_removed: int = 0
    revenue: Decimal = Decimal("0.00")
    reasons: Counter[str] = field(default_factory=Counter)  # per broken rule (a row may break several)

    @property
    def unaccounted(self) -> int:
        """Bronze lines in none of silver, the quarantine and the removed duplicates (always 0)."""
        return self.bronze_rows - self.silver_rows - self.quarantined - self.duplicates_removed


@dataclass(frozen=True)
class SilverResult:
    hours: tuple[HourCounts, ...]
    silver_location: str
    quarantine_location: str

    @property
    def bronze_rows(self) -> int:
        return sum(h.bronze_rows for h in self.hours)

    @property
    def silver_rows(self) -> int:
        return sum(h.silver_rows for h in self.hours)

    @property
    def quarantined(self) -> int:
        return sum(h.quarantined for h in self.hours)

    @property
    def duplicates_removed(self) -> int:
        return sum(h.duplicates_removed for h in self.hours)

    @property
    def revenue(self) -> Decimal:
        return sum((h.revenue for h in self.hours), Decimal("0.00"))

    @property
    def reasons(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for h in self.hours:
            total.update(h.reasons)
        return total

    @property
    def unaccounted(self) -> int:
        return self.bronze_rows - self.silver_rows - self.quarantined - self.duplicates_removed


class ReconciliationError(RuntimeError):
    """Some bronze lines would end in no table, or in two."""


# --- The job ----------------------------------------------------------------------------------


def read_lines(spark: SparkSession, paths: Sequence[str]) -> DataFrame:
    """The non-blank lines of the bronze files, with the ingest hour their file's path names."""
    year, month, day, hour = (F.regexp_extract(F.col("_metadata.file_path"), _HOUR_IN_PATH, i) for i in range(1, 5))
    hour_of_file = F.concat(year, F.lit("-"), month, F.lit("-"), day, F.lit("T"), hour)  # as ingest_hour spells it
    return (
        spark.read.text(list(paths))
        .select(
            F.col("value").alias("raw"),
            hour_of_file.alias("_hour"),
        )
        .where(F.trim("raw") != "")
    )


def check_lines(lines: DataFrame) -> DataFrame:
    """Each line parsed, its columns typed, and the contract's rules it breaks (``reasons``)."""
    contract = load_contract("purchases")
    columns = contract.columns()
    names = [c.name for c in columns]
    reference = next((c.name for c in columns if c.logical_type == "timestamp"), None)

    parsed = lines.withColumn("_doc", F.try_parse_json("raw"))
    fields = parsed.select(
        "*",
        F.map_keys(F.try_variant_get("_doc", "$", "map<string,variant>")).alias("_keys"),
        *[json_kind(F.try_variant_get("_doc", f"$['{n}']", "variant")).alias(_kind(n)) for n in names],
        *[F.try_variant_get("_doc", f"$['{n}']", "string").alias(_text(n)) for n in names],
    )
    read = fields.select("*", *[reading(c).alias(_read(c.name)) for c in columns])

    unknown = F.array_sort(F.array_except("_keys", F.array(*[F.lit(n) for n in names])))
    row_reasons = F.array_compact(
        F.array(
            F.when(F.size(unknown) > 0, F.concat(F.lit("unknown fields: "), F.array_join(unknown, ", "))),
            *[column_reason(c, reference) for c in columns],
            *[F.when(r.failed, r.reason) for r in partition_rules()],
        )
    )
    reasons = (
        F.when(F.col("_doc").isNull(), F.array(F.lit("unparseable JSON")))
        .when(F.col("_keys").isNull(), F.array(F.lit("not a JSON object")))
        .otherwise(row_reasons)
    )
    typed = [F.col(_read(c.name)).try_cast(c.physical_type).alias(c.name) for c in columns]
    readable_id = F.when(F.col(_kind("purchase_id")) == "string", F.col(_text("purchase_id")))
    return read.select("raw", "_hour", reasons.alias("reasons"), readable_id.alias("_readable_id"), *typed).withColumn(
        "_valid", F.size("reasons") == 0
    )


def decide_fate(checked: DataFrame) -> DataFrame:
    """Each checked line's ``_fate``: quarantined, silver (the latest valid copy of its purchase in
    its hour), or duplicate."""
    latest_first = Window.partitionBy("_hour", "_valid", "purchase_id").orderBy(
        F.col("received_at").desc(), F.col("raw").desc()
    )
    fate = (
        F.when(~F.col("_valid"), "quarantined")
        .when(F.row_number().over(latest_first) == 1, "silver")
        .otherwise("duplicate")
    )
    return checked.withColumn("_fate", fate)


def _classify(spark: SparkSession, paths: Sequence[str]) -> DataFrame:
    """Every non-blank bronze line with its hour, its typed columns, its reasons and its fate."""
    return decide_fate(check_lines(read_lines(spark, paths)))


def _partition_columns(frame: DataFrame) -> DataFrame:
    hour = F.col("_hour")
    return frame.select(
        "*",
        F.substring(hour, 1, 4).alias("year"),
        F.substring(hour, 6, 2).alias("month"),
        F.substring(hour, 9, 2).alias("day"),
        F.substring(hour, 12, 2).alias("hour"),
    )


def silver_rows(classified: DataFrame, products: DataFrame) -> DataFrame:
    """Silver's columns in the contract's order and physical types, enriched with the products."""
    lakehouse = load_contract("lakehouse")
    product_columns = {c.name for c in lakehouse.columns(PRODUCTS_TABLE)} - {"product_id"}
    purchase_columns = {c.name for c in load_contract("purchases").columns()}
    enriched = classified.where(F.col("_fate") == "silver").join(
        F.broadcast(products.select("product_id", *sorted(product_columns))), "product_id", "left"
    )
    derived = {
        "category": F.coalesce(F.col("category"), F.lit(UNKNOWN_CATEGORY)),
        "paid_in_installments": F.col("number_of_installments") > 1,
    }
    selected = []
    for c in lakehouse.columns(SILVER_TABLE):
        if c.name in derived:
            source = derived[c.name]
        elif c.name in purchase_columns or c.name in product_columns:
            source = F.col(c.name)
        else:
            raise ValueError(f"silver does not know how to fill the contract's column {c.name!r}")
        selected.append(source.cast(c.physical_type).alias(c.name))
    return _partition_columns(enriched.select("_hour", *selected)).drop("_hour")


def quarantine_rows(classified: DataFrame) -> DataFrame:
    sources = {
        "raw": F.col("raw"),
        "reason": F.array_join("reasons", "; "),
        "purchase_id": F.col("_readable_id"),
        "ingest_hour": F.col("_hour"),
    }
    columns = load_contract("lakehouse").columns(QUARANTINE_TABLE)
    selected = [sources[c.name].cast(c.physical_type).alias(c.name) for c in columns]
    return _partition_columns(classified.where(F.col("_fate") == "quarantined").select("_hour", *selected)).drop(
        "_hour"
    )


def _write(frame: DataFrame, location: str, order: Sequence[str]) -> None:
    """Replace the partitions present in ``frame`` (dynamic overwrite), one file per hour."""
    (
        frame.repartition(*PARTITION_COLUMNS)
        .sortWithinPartitions(*PARTITION_COLUMNS, *order)
        .write.mode("overwrite")
        .option("partitionOverwriteMode", "dynamic")
        .partitionBy(*PARTITION_COLUMNS)
        .parquet(location)
    )


def _count(classified: DataFrame, hours: Sequence[Hour]) -> tuple[HourCounts, ...]:
    fate = F.col("_fate")

    def rows(which: str) -> SparkColumn:
        return F.sum(F.when(fate == which, 1).otherwise(0)).alias(which)

    totals = {
        r["_hour"]: r
        for r in classified.groupBy("_hour")
        .agg(
            F.count(F.lit(1)).alias("bronze"),
            rows("silver"),
            rows("quarantined"),
            rows("duplicate"),
            F.sum(F.when(fate == "silver", F.col("total_amount"))).alias("revenue"),
        )
        .collect()
    }
    reasons: dict[str, Counter[str]] = {}
    for r in (
        classified.where(fate == "quarantined")
        .select("_hour", F.explode("reasons").alias("reason"))
        .groupBy("_hour", "reason")
        .count()
        .collect()
    ):
        reasons.setdefault(r["_hour"], Counter())[r["reason"]] = int(r["count"])
    counts = []
    for hour in hours:
        row = totals.get(hour.ingest_hour)
        if row is None:
            counts.append(HourCounts(hour))
            continue
        counts.append(
            HourCounts(
                hour,
                bronze_rows=int(row["bronze"]),
                silver_rows=int(row["silver"]),
                quarantined=int(row["quarantined"]),
                duplicates_removed=int(row["duplicate"]),
                revenue=row["revenue"] if row["revenue"] is not None else Decimal("0.00"),
                reasons=reasons.get(hour.ingest_hour, Counter()),
            )
        )
    return tuple(counts)


def build_silver(
    spark: SparkSession, lake: Lake, hours: Sequence[Hour], timings: Timings | None = None
) -> SilverResult:
    """Build silver and its quarantine for ``hours`` in one Spark job, replacing exactly those hours.

    A missing bronze file is an empty hour. An hour that ends with no rows in a table has its
    partition folder of that table deleted, so no stale rows of an earlier run survive. ``timings``
    receives the job's stages: Spark evaluates lazily, so "classify and count" holds the read of
    bronze, the contract's rules and the deduplication (cached for the writes that follow).
    """
    timings = timings if timings is not None else Timings()
    for key, value in SESSION_CONF.items():
        spark.conf.set(key, value)
    hours = sorted(set(hours))
    silver_location, quarantine_location = lake.uri(SILVER), lake.uri(QUARANTINE)
    with timings.span("list bronze files"):
        paths = [lake.uri(bronze_file(h)) for h in hours if lake.exists(bronze_file(h))]
    if not paths:
        counts = tuple(HourCounts(h) for h in hours)
        _clear_empty(lake, counts)
        return SilverResult(counts, silver_location, quarantine_location)

    if not lake.exists(PRODUCTS_FILE):
        raise FileNotFoundError(f"{lake.uri(PRODUCTS_FILE)} is missing: materialize reference/products first")
    products = spark.read.parquet(lake.uri(PRODUCTS_FILE))
    classified = _classify(spark, paths).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        with timings.span("classify and count (read, parse, contract rules, dedupe)"):
            counts = _count(classified, hours)
        broken = [f"{h.hour.key}: {h.unaccounted:+d}" for h in counts if h.unaccounted]
        if broken:
            raise ReconciliationError(f"bronze lines unaccounted for: {', '.join(broken)}")
        if any(h.silver_rows for h in counts):
            with timings.span("enrich and write silver"):
                _write(silver_rows(classified, products), silver_location, ["purchase_id"])
        if any(h.quarantined for h in counts):
            with timings.span("write quarantine"):
                _write(quarantine_rows(classified), quarantine_location, ["purchase_id", "raw"])
    finally:
        classified.unpersist()
    _clear_empty(lake, counts)
    return SilverResult(counts, silver_location, quarantine_location)


def _clear_empty(lake: Lake, counts: Sequence[HourCounts]) -> None:
    for h in counts:
        if not h.silver_rows:
            lake.delete(f"{SILVER}/{h.hour.path}")
        if not h.quarantined:
            lake.delete(f"{QUARANTINE}/{h.hour.path}")
