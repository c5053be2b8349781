"""Gold: dbt-duckdb aggregates of silver, the star schema and the marts, written, audited by dbt's
tests, then published.

One dbt project and one ``@dbt_assets`` definition build three folders of models
(``GoldTranslator``): ``models/gold`` (``gold/<model>``, group gold), ``models/star`` (the star
schema, ``star/<model>``, group star, stored under ``silver/star/``) and ``models/marts``
(``gold/<model>``, group marts). The fact needs the product dimension in the same run, and the
dimensions are small, so they are rebuilt whole by every run rather than by a run of their own.

Partitioning: the gold models share silver's hourly partitions, daily tables included. A daily
table (``sales_by_category_daily``, ``buyer_daily``) is rebuilt for every whole day its partition
window touches, from all of that day's silver hours. We chose this over daily partitions with a
time-window mapping because (1) one ``@dbt_assets`` definition, one partitioning and one run serve
every model, so a single hour (the schedule, a DLQ redrive, late data) refreshes all gold tables
at once instead of waiting for a daily partition that would only run after midnight; and (2) a
late or rerun hour is always reflected in its day, because the day is recomputed, not patched.
Rebuilding a day costs little (one day of silver, at most 24 files).

Write-audit-publish: dbt writes each model for the window to a staging folder (``out_dir``),
its tests (generated from the contract, see ``cart_lakehouse/dbt_contract.py``) audit it, and only
a model whose blocking tests pass is published into ``<lake>/gold/<model>/day=YYYY-MM-DD/``
(``layout.GoldTable``: one file per hour, or per day), replacing exactly the window's files.
A failing test leaves the published gold untouched and fails the run. Dimensions (``whole``
tables) are one file, replaced by every run.
"""

import tempfile
import time
from collections.abc import Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as arrow
import pyarrow.compute as pc
import pyarrow.parquet as pq
from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetKey,
    BackfillPolicy,
    Failure,
    MetadataValue,
    Output,
)
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets

from cart_lakehouse.catalog import CatalogTable
from cart_lakehouse.checks.schemas import arrow_schema
from cart_lakehouse.dbt_build import DbtBuild, dbt_build
from cart_lakehouse.filedrop.kpi_tables import read_kpis
from cart_lakehouse.filedrop.store import set_files
from cart_lakehouse.gold_project import GOLD_PROJECT
from cart_lakehouse.hours import period_keys
from cart_lakehouse.jobs.products import products_table
from cart_lakehouse.lake import Lake
from cart_lakehouse.layout import GOLD_TABLES, PRODUCTS_TABLE, SILVER, GoldTable
from cart_lakehouse.metadata import column_schema, preview
from cart_lakehouse.partitions import Hour, hourly_partitions, hours_between
from cart_lakehouse.resources import CatalogResource, LakeResource
from cart_lakehouse.timings import Timings, dbt_node_seconds
from contracts import load_contract

OWNER = "team:cart-platform"
SILVER_TABLE = "silver_purchases"


def model_folder(dbt_resource_props: Any) -> str:
    """The folder of a model under ``models/`` (``gold``, ``star`` or ``marts``)."""
    fqn = list(dbt_resource_props.get("fqn") or [])
    return str(fqn[1]) if len(fqn) > 2 else "gold"


class GoldTranslator(DagsterDbtTranslator):
    """Models by folder: ``models/star/*`` as ``star/<model>`` (group star), ``models/marts/*`` as
    ``gold/<model>`` (group marts), ``models/gold/*`` as ``gold/<model>`` (group gold); sources are
    the assets their ``meta.dagster.asset_key`` names (silver purchases, the file drop's products)."""

    def get_asset_key(self, dbt_resource_props: Any) -> AssetKey:
        if dbt_resource_props["resource_type"] == "model":
            prefix = "star" if model_folder(dbt_resource_props) == "star" else "gold"
            return AssetKey([prefix, dbt_resource_props["name"]])
        return super().get_asset_key(dbt_resource_props)

    def get_group_name(self, dbt_resource_props: Any) -> str | None:
        return model_folder(dbt_resource_props) if dbt_resource_props["resource_type"] == "model" else None

    def get_owners(self, dbt_resource_props: Any) -> Sequence[str] | None:
        return [OWNER]


@dataclass(frozen=True)
class Window:
    """The partition window as dbt's vars.

    Daily models rebuild every day the window touches, from all of silver's hours of those days.
    A mart with moving figures (``GoldTable.follows_days``) also reads the ``lookback_days`` before
    them (day-over-day and 7-day figures), and rebuilds the ``following_days`` after the window
    whose published moving figures depend on its days, so that a late hour corrects them too (for
    the usual latest hour there are none)."""

    hours: tuple[Hour, ...]
    following_days: int = 0
    lookback_days: int = 0

    @property
    def days(self) -> list[date]:
        return sorted({h.start.date() for h in self.hours})

    @property
    def mart_days(self) -> list[date]:
        """The days whose mart rows this run rebuilds: the window's and the following days."""
        last = self.days[-1]
        return [*self.days, *(last + timedelta(days=n) for n in range(1, self.following_days + 1))]

    def silver_hours(self) -> list[Hour]:
        """Every hour of every day the models read: the marts' days and the lookback before them."""
        first, last = self.days[0] - timedelta(days=self.lookback_days), self.mart_days[-1]
        start = datetime(first.year, first.month, first.day, tzinfo=UTC)
        return hours_between(start, datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1))

    def vars(self, lake: Lake, out_dir: Path) -> dict[str, Any]:
        """dbt's vars of the window: its hours and days, and every input file of the models, each
        list of files after an empty file typed by its contract (an empty input still has a schema)."""
        return {
            "window_start": self.hours[0].ingest_hour,
            "window_end": Hour(self.hours[-1].end).ingest_hour,
            "day_start": self.days[0].isoformat(),
            "day_end": (self.days[-1] + timedelta(days=1)).isoformat(),
            "silver_files": silver_files(lake, self.silver_hours(), out_dir / "_silver_schema.parquet"),
            "seed_products_file": staged(out_dir / "_seed_products.parquet", products_table()),
            "product_files": [
                staged(out_dir / "_products_schema.parquet", arrow_schema("products", "filedrop").empty_table()),
                *(lake.uri(f) for files in set_files(lake, "silver", "products").values() for f in files),
            ],
            "product_rules": product_rules(),
            "buyer_history_files": [
                staged(out_dir / "_buyer_daily_schema.parquet", arrow_schema("buyer_daily").empty_table()),
                *history_files(lake, GOLD_TABLES["buyer_daily"], exclude=self.days),
            ],
            "calendar_start": hourly_partitions.start.date().isoformat(),
            "lookback_start": (self.days[0] - timedelta(days=self.lookback_days)).isoformat(),
            "mart_day_end": (self.mart_days[-1] + timedelta(days=1)).isoformat(),
            "category_kpi_file": staged(
                out_dir / "_category_kpis.parquet", read_kpis(lake, "category_kpis", self.days)
            ),
            "out_dir": str(out_dir),
        }


def window_of(lake: Lake, hours: Sequence[Hour], selected: Collection[str]) -> Window:
    """The run's window. For each selected table whose rows depend on earlier days
    (``follows_days``), the days before it reads, and the days after the window it rebuilds: up to
    the last of those days it has published (a day never published is left to the day's own run)."""
    moving = [t for t in GOLD_TABLES.values() if t.follows_days and t.model in selected]
    last = max(h.start.date() for h in hours)
    needed = 0
    for table in moving:
        published = [
            n for n in range(1, table.follows_days + 1) if lake.exists(table.day_file(last + timedelta(days=n)))
        ]
        needed = max(needed, *published, 0)
    return Window(tuple(hours), needed, max((t.follows_days for t in moving), default=0))


def staged(path: Path, table: arrow.Table) -> str:
    """Write ``table`` to a local Parquet file for dbt's run; returns its path."""
    pq.write_table(table, path)
    return str(path)


def silver_files(lake: Lake, hours: Sequence[Hour], schema_file: Path) -> list[str]:
    """The silver Parquet files of the hours, after an empty file typed by the contract (listed a
    day at a time: one listing per day rather than per hour, which counts on S3)."""
    wanted = {h.path for h in hours}
    days = dict.fromkeys(h.path.rsplit("/", 1)[0] for h in hours)
    found = [
        lake.uri(f)
        for day in days
        for f in lake.files(f"{SILVER}/{day}")
        if f.endswith(".parquet") and "/".join(f.removeprefix(f"{SILVER}/").split("/")[:4]) in wanted
    ]
    return [staged(schema_file, arrow_schema(SILVER_TABLE).empty_table()), *found]


def history_files(lake: Lake, table: GoldTable, exclude: Sequence[date]) -> list[str]:
    """The published day files of a daily table, but those of the ``exclude`` days (this run rebuilds them)."""
    skipped = {table.day_file(d) for d in exclude}
    return [
        lake.uri(f)
        for f in lake.files(table.location)
        if f.endswith("/data.parquet") and "/day=" in f and f not in skipped
    ]


def product_rules() -> dict[str, Any]:
    """The rules of the lakehouse contract's products table that dim_product applies in SQL to skip
    the rows reference/products refuses (``jobs/products.py``, ``dimension()``)."""
    columns = {c.name: c for c in load_contract("lakehouse").columns(PRODUCTS_TABLE)}
    price = columns["retail_price"].options
    return {
        "id_pattern": columns["product_id"].options["pattern"],
        "categories": list(columns["category"].custom["enum"]),
        "departments": list(columns["department"].custom["enum"]),
        "price_above": price["exclusiveMinimum"],
        "price_max": price["maximum"],
    }


def _write(lake: Lake, relative: str, rows: arrow.Table) -> None:
    sink = arrow.BufferOutputStream()
    pq.write_table(rows, sink)
    lake.write_bytes(relative, sink.getvalue().to_pybytes())


def publish(lake: Lake, table: GoldTable, staged: Path, hours: Sequence[Hour], days: Sequence[date]) -> arrow.Table:
    """Replace the window's files of a table with the staged rows (cast to the contract's types):
    an hourly table's files of the ``hours``, a daily table's of the ``days``.

    Each file is written atomically; a file whose hour (or day) has no rows any more is deleted.
    A ``whole`` table is one file, replaced (empty, with its schema, when it has no rows).
    """
    data = pq.read_table(staged).cast(arrow_schema(table.model, contract=table.contract))
    if table.kind == "whole":
        _write(lake, table.file(hours[0]), data)
        return data
    if table.kind == "daily":
        key = pc.strftime(data.column("day"), format="%Y-%m-%d")
        files = {table.day_file(d): d.isoformat() for d in days}
    else:
        key = period_keys(data.column(table.hour_column), "hour", "%Y-%m-%dT%H")
        files = {table.file(h): h.ingest_hour for h in hours}
    for file, value in files.items():
        rows = data.filter(pc.equal(key, value))
        if rows.num_rows == 0:
            lake.delete(file)
        else:
            _write(lake, file, rows)
    return data


def catalog_table(lake: Lake, table: GoldTable) -> CatalogTable:
    """The table in Glue: named after its folder (``gold_sales_hourly``, ``silver_star_dim_product``)."""
    return CatalogTable(
        name=table.location.replace("/", "_"),
        contract_table=table.model,
        location=lake.uri(table.location),
        partition_keys=table.partition_keys,
        contract=table.contract,
    )


def catalog_partitions(table: GoldTable, data: arrow.Table) -> list[list[str]]:
    if table.kind == "whole":
        return []
    days = data.column("day") if table.kind == "daily" else pc.cast(data.column(table.hour_column), arrow.date32())
    return [[d.isoformat()] for d in sorted(pc.unique(days).to_pylist())]  # unique first: 1M rows 2.0 s -> 0.06 s


PUBLISH_THREADS = 4
# the wall time of publishing and registering every table of the run, on PUBLISH_THREADS threads:
# each table's own "publish" and "Glue registration" spans overlap with the others'
PUBLISH_ALL = f"publish and Glue registration, all tables ({PUBLISH_THREADS} threads)"
# the same dbt invocation, reported on every model
DBT_PARSE, DBT_BUILD = "dbt parse (once per process)", "dbt build (all models and tests)"


def dbt_timings(build: DbtBuild) -> dict[str, Timings]:
    """Per model: the project's parse (once per process), the whole build (its nodes run on dbt's
    threads, so their seconds overlap), the model's own seconds and its tests'."""
    nodes = dbt_node_seconds(build.run_results)
    attached = {
        f"test.{n['name']}": str(n.get("attached_node", "")).rsplit(".", 1)[-1]
        for n in build.manifest.get("nodes", {}).values()
        if n.get("resource_type") == "test"
    }
    per_model: dict[str, Timings] = {}
    for name in (n.removeprefix("model.") for n in nodes if n.startswith("model.")):
        timings = per_model[name] = Timings()
        timings.add(DBT_PARSE, build.parse_seconds)
        timings.add(DBT_BUILD, build.seconds)
        timings.add("dbt model", nodes[f"model.{name}"])
        tests = [seconds for test, seconds in nodes.items() if attached.get(test) == name]
        timings.add(f"dbt tests ({len(tests)})", sum(tests))
    return per_model


# per model: the column of revenue and the column counting purchases (None: one purchase a row),
# summed over the rows the run published, for the asset's numeric metadata
MEASURES: dict[str, tuple[str, str | None]] = {
    "sales_hourly": ("revenue", "purchases"),
    "sales_by_category_daily": ("revenue", "purchases"),
    "buyer_daily": ("spend", "purchases"),
    "fact_purchases": ("total_amount", None),
    "dim_buyer": ("spend_to_date", "purchases_to_date"),
    "sales_performance": ("revenue", "purchases"),  # its day rows (the hour rows add up to them)
    "items_category_performance": ("revenue", "units"),
}


def measures(model: str, data: arrow.Table) -> dict[str, Any]:
    """``revenue`` and ``purchases`` of the rows published (for ``dim_buyer``: to date), so the
    asset's page plots them over its materializations; none for a model without them."""
    if model not in MEASURES:
        return {}
    revenue, purchases = MEASURES[model]
    if "grain" in data.column_names:
        data = data.filter(pc.equal(data.column("grain"), "day"))
    total = pc.sum(data.column(revenue)).as_py() if data.num_rows else None
    count = data.num_rows if purchases is None else (pc.sum(data.column(purchases)).as_py() if data.num_rows else 0)
    return {"revenue": MetadataValue.float(float(total or 0)), "purchases": MetadataValue.int(int(count or 0))}


def model_metadata(lake: Lake, table: GoldTable, data: arrow.Table) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "dagster/row_count": MetadataValue.int(data.num_rows),
        **measures(table.model, data),
        "dagster/column_schema": column_schema(table.model, contract=table.contract),
        "location": MetadataValue.path(lake.uri(table.location)),
        "preview": preview(data, 10),
    }
    if table.kind != "whole":
        metadata["days"] = len(catalog_partitions(table, data))
    return metadata


@dbt_assets(
    manifest=GOLD_PROJECT.manifest_path,
    project=GOLD_PROJECT,
    name="gold",
    partitions_def=hourly_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    dagster_dbt_translator=GoldTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True)),
)
def gold(
    context: AssetExecutionContext, dbt: DbtCliResource, lake: LakeResource, catalog: CatalogResource
) -> Iterator[Any]:
    hours = hours_between(context.partition_time_window.start, context.partition_time_window.end)
    the_lake = lake.lake()
    selected = {key.path[-1] for key in context.selected_asset_keys}
    window = window_of(the_lake, hours, selected)
    with tempfile.TemporaryDirectory(prefix="cart-gold-") as tmp:
        out_dir = Path(tmp)
        dbt_vars = window.vars(the_lake, out_dir)
        context.log.info(
            f"gold {window.hours[0].key}..{window.hours[-1].key}: {len(window.days)} day(s) "
            f"(marts: {len(window.mart_days)}, {window.following_days} following day(s) already published), "
            f"{len(dbt_vars['silver_files']) - 1} silver file(s) with {window.lookback_days} days of lookback, "
            f"{len(dbt_vars['product_files']) - 1} file-drop products file(s), "
            f"{len(dbt_vars['buyer_history_files']) - 1} buyer_daily day(s) of history"
        )
        build = dbt_build(context, dbt, dbt_vars, out_dir / "dbt")
        timings = dbt_timings(build)
        events = build.events
        failed = {
            e.asset_key
            for e in events
            if isinstance(e, AssetCheckResult) and not e.passed and e.severity.value == "ERROR"
        }
        glue = catalog.catalog()

        def publish_and_register(table: GoldTable) -> tuple[arrow.Table, Any, Timings]:
            spans = timings.get(table.model, Timings())
            with spans.span("publish"):
                days = window.mart_days if table.follows_days else window.days
                data = publish(the_lake, table, out_dir / f"{table.model}.parquet", window.hours, days)
            with spans.span("Glue registration"):
                registration = glue.register(catalog_table(the_lake, table), catalog_partitions(table, data))
            return data, registration, spans

        passed = {
            event.output_name: GOLD_TABLES[context.asset_key_for_output(event.output_name).path[-1]]
            for event in events
            if isinstance(event, Output) and context.asset_key_for_output(event.output_name) not in failed
        }
        # the tables are independent files and Glue tables: written and registered side by side (the
        # work waits on file writes and Glue's HTTP answers; 8 tables one by one took 1.4 s)
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=PUBLISH_THREADS, thread_name_prefix="gold-publish") as pool:
            published = {name: pool.submit(publish_and_register, table) for name, table in passed.items()}
        publish_wall = time.perf_counter() - started
        held_back, unpublished = [], {}
        for event in events:
            if isinstance(event, Output):
                key = context.asset_key_for_output(event.output_name)
                table = GOLD_TABLES[key.path[-1]]
                if key in failed:
                    held_back.append(table.model)
                    continue
                # every table that published is materialized, even when another one failed to:
                # the run's record must say what the lake now holds
                if (error := published[event.output_name].exception()) is not None:
                    unpublished[table.model] = error
                    continue
                data, registration, spans = published[event.output_name].result()
                spans.add(PUBLISH_ALL, publish_wall)  # the tables' own spans above overlap
                metadata = {
                    **model_metadata(the_lake, table, data),
                    "glue_table": f"{catalog.database}.{registration.table}",
                    "glue_partitions_added": registration.partitions_added,
                    **spans.metadata(),
                }
                yield event.with_metadata({**event.metadata, **metadata})
            else:
                yield event
    if unpublished:
        raise Failure(
            description="publishing failed for "
            + "; ".join(f"{model}: {type(e).__name__}: {e}" for model, e in sorted(unpublished.items()))
            + ". Its previous files may be partly replaced; the other tables published. Rerun the partition.",
        ) from next(iter(unpublished.values()))
    if held_back:
        raise Failure(
            description=f"dbt tests failed for {', '.join(sorted(held_back))}: not published (the lake keeps the "
            "previous gold). See the failed checks.",
        )
    if not build.success:
        raise Failure(description=f"dbt build failed: {build.error}")
