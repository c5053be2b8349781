"""Gold: dbt-duckdb aggregates of silver, written, audited by dbt's tests, then published.

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
A failing test leaves the published gold untouched and fails the run.
"""

import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
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
from cart_lakehouse.gold_project import GOLD_PROJECT
from cart_lakehouse.lake import Lake
from cart_lakehouse.layout import GOLD_TABLES, SILVER, GoldTable
from cart_lakehouse.metadata import column_schema, preview
from cart_lakehouse.partitions import Hour, hourly_partitions, hours_between, whole_days
from cart_lakehouse.resources import CatalogResource, LakeResource
from cart_lakehouse.timings import Timings, dbt_node_seconds

OWNER = "team:cart-platform"
SILVER_TABLE = "silver_purchases"


class GoldTranslator(DagsterDbtTranslator):
    """Gold models as ``gold/<model>`` in group gold; the silver source is the silver asset."""

    def get_asset_key(self, dbt_resource_props: Any) -> AssetKey:
        if dbt_resource_props["resource_type"] == "model":
            return AssetKey(["gold", dbt_resource_props["name"]])
        return super().get_asset_key(dbt_resource_props)

    def get_group_name(self, dbt_resource_props: Any) -> str | None:
        return "gold" if dbt_resource_props["resource_type"] == "model" else None

    def get_owners(self, dbt_resource_props: Any) -> Sequence[str] | None:
        return [OWNER]


@dataclass(frozen=True)
class Window:
    """The partition window as dbt's vars."""

    hours: tuple[Hour, ...]

    @property
    def days(self) -> list[date]:
        return sorted({h.start.date() for h in self.hours})

    def silver_hours(self) -> list[Hour]:
        """Every hour of every day the window touches (daily models rebuild whole days)."""
        return whole_days(self.hours)

    def vars(self, silver_files: Sequence[str], out_dir: Path) -> dict[str, Any]:
        return {
            "window_start": self.hours[0].ingest_hour,
            "window_end": Hour(self.hours[-1].end).ingest_hour,
            "day_start": self.days[0].isoformat(),
            "day_end": (self.days[-1] + timedelta(days=1)).isoformat(),
            "silver_files": list(silver_files),
            "out_dir": str(out_dir),
        }


def silver_files(lake: Lake, hours: Sequence[Hour], schema_file: Path) -> list[str]:
    """The silver Parquet files of the hours, after an empty file typed by the contract."""
    pq.write_table(arrow_schema(SILVER_TABLE).empty_table(), schema_file)
    found = [lake.uri(f) for h in hours for f in lake.files(f"{SILVER}/{h.path}") if f.endswith(".parquet")]
    return [str(schema_file), *found]


def publish(lake: Lake, table: GoldTable, staged: Path, hours: Sequence[Hour]) -> arrow.Table:
    """Replace the window's files of a gold table with the staged rows (cast to the contract's types).

    Each file is written atomically; a file whose hour (or day) has no rows any more is deleted.
    """
    data = pq.read_table(staged).cast(arrow_schema(table.model))
    if table.daily:
        key, keys = pc.strftime(data.column("day"), format="%Y-%m-%d"), {h: h.start.date().isoformat() for h in hours}
    else:
        key, keys = pc.strftime(data.column("hour"), format="%Y-%m-%dT%H"), {h: h.ingest_hour for h in hours}
    for hour in hours:
        rows = data.filter(pc.equal(key, keys[hour]))
        if rows.num_rows == 0:
            lake.delete(table.file(hour))
            continue
        sink = arrow.BufferOutputStream()
        pq.write_table(rows, sink)
        lake.write_bytes(table.file(hour), sink.getvalue().to_pybytes())
    return data


def catalog_table(lake: Lake, table: GoldTable) -> CatalogTable:
    return CatalogTable(
        name=f"gold_{table.model}",
        contract_table=table.model,
        location=lake.uri(table.location),
        partition_keys=("day",),
    )


def catalog_partitions(table: GoldTable, data: arrow.Table) -> list[list[str]]:
    days = data.column("day") if table.daily else pc.cast(data.column("hour"), arrow.date32())
    return [[d.isoformat()] for d in sorted(set(days.to_pylist()))]


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
        timings.add("dbt parse (once per process)", build.parse_seconds)
        timings.add("dbt build (all models and tests)", build.seconds)
        timings.add("dbt model", nodes[f"model.{name}"])
        tests = [seconds for test, seconds in nodes.items() if attached.get(test) == name]
        timings.add(f"dbt tests ({len(tests)})", sum(tests))
    return per_model


def model_metadata(lake: Lake, table: GoldTable, data: arrow.Table) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "dagster/row_count": data.num_rows,
        "dagster/column_schema": column_schema(table.model),
        "location": MetadataValue.path(lake.uri(table.location)),
        "days": len(catalog_partitions(table, data)),
        "preview": preview(data, 10),
    }
    revenue = "spend" if "spend" in data.column_names else "revenue"
    if data.num_rows:
        metadata[f"total_{revenue}"] = MetadataValue.float(float(pc.sum(data.column(revenue)).as_py()))
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
    window = Window(tuple(hours_between(context.partition_time_window.start, context.partition_time_window.end)))
    the_lake = lake.lake()
    with tempfile.TemporaryDirectory(prefix="cart-gold-") as tmp:
        out_dir = Path(tmp)
        files = silver_files(the_lake, window.silver_hours(), out_dir / "_silver_schema.parquet")
        context.log.info(
            f"gold {window.hours[0].key}..{window.hours[-1].key}: {len(files) - 1} silver file(s) "
            f"of {len(window.days)} day(s)"
        )
        build = dbt_build(context, dbt, window.vars(files, out_dir), out_dir / "dbt")
        timings = dbt_timings(build)
        events = build.events
        failed = {
            e.asset_key
            for e in events
            if isinstance(e, AssetCheckResult) and not e.passed and e.severity.value == "ERROR"
        }
        held_back = []
        for event in events:
            if isinstance(event, Output):
                key = context.asset_key_for_output(event.output_name)
                table = GOLD_TABLES[key.path[-1]]
                if key in failed:
                    held_back.append(table.model)
                    continue
                spans = timings.get(table.model, Timings())
                with spans.span("publish"):
                    data = publish(the_lake, table, out_dir / f"{table.model}.parquet", window.hours)
                with spans.span("Glue registration"):
                    registration = catalog.catalog().register(
                        catalog_table(the_lake, table), catalog_partitions(table, data)
                    )
                metadata = {
                    **model_metadata(the_lake, table, data),
                    "glue_table": f"{catalog.database}.{registration.table}",
                    "glue_partitions_added": registration.partitions_added,
                    **spans.metadata(),
                }
                yield event.with_metadata({**event.metadata, **metadata})
            else:
                yield event
    if held_back:
        raise Failure(
            description=f"dbt tests failed for {', '.join(sorted(held_back))}: not published (the lake keeps the "
            "previous gold). See the failed checks.",
        )
    if not build.success:
        raise Failure(description=f"dbt build failed: {build.error}")
