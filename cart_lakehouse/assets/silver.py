"""Silver: bronze purchases cleaned, typed, deduplicated and enriched with PySpark, and their quarantine.

One multi-asset builds both tables from the same read of bronze (``jobs/silver.py`` does the work);
a backfill of many hours is a single run and a single Spark job. Each run replaces exactly its
hours' partitions under ``silver/purchases/`` and ``silver/purchases_quarantine/``.

The Spark job runs where the ``silver_runner`` resource says (``CART_SILVER_RUNNER``): in the run's
own Spark session, or as a job run on EMR Serverless through Dagster Pipes (``jobs/silver_entry.py``),
which reports the counts back; the Glue registration and the metadata are the same either way.
"""

from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as arrow
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    BackfillPolicy,
    Failure,
    MaterializeResult,
    MetadataValue,
    multi_asset,
)
from dagster_pyspark import LazyPySparkResource

from cart_lakehouse.catalog import CatalogTable
from cart_lakehouse.jobs.silver import (
    QUARANTINE_TABLE,
    SILVER_TABLE,
    UNKNOWN_CATEGORY,
    HourCounts,
    SilverResult,
    build_silver,
)
from cart_lakehouse.jobs.silver_entry import result_from_counts, start_job_run_params
from cart_lakehouse.lake import Lake
from cart_lakehouse.layout import SILVER
from cart_lakehouse.layout import SILVER_QUARANTINE as QUARANTINE
from cart_lakehouse.metadata import column_schema, preview
from cart_lakehouse.partitions import Hour, hourly_partitions, hours_between
from cart_lakehouse.resources import CatalogResource, LakeResource, SilverRunnerResource
from cart_lakehouse.timings import Timings

OWNER = "team:cart-platform"
BRONZE_PURCHASES = AssetKey(["bronze", "purchases"])
REFERENCE_PRODUCTS = AssetKey(["reference", "products"])
SILVER_PURCHASES = AssetKey(["silver", "purchases"])
SILVER_QUARANTINE = AssetKey(["silver", "purchases_quarantine"])
PREVIEW_ROWS = 5


@multi_asset(
    name="silver_purchases",
    specs=[
        AssetSpec(
            key=SILVER_PURCHASES,
            group_name="silver",
            deps=[BRONZE_PURCHASES, REFERENCE_PRODUCTS],
            owners=[OWNER],
            kinds={"spark", "parquet"},
            description=(
                "Purchases of each ingest hour cast to the contract's types, deduplicated on purchase_id "
                "(latest received_at wins) and enriched with the products dimension, as Parquet under "
                "silver/purchases/year=/month=/day=/hour=/."
            ),
            metadata={"contract": f"contracts/lakehouse.odcs.yaml#{SILVER_TABLE}"},
        ),
        AssetSpec(
            key=SILVER_QUARANTINE,
            group_name="silver",
            deps=[BRONZE_PURCHASES],
            owners=[OWNER],
            kinds={"spark", "parquet"},
            description=(
                "Bronze lines that break the purchases contract (unparseable, wrong type, out of range, ...), "
                "verbatim with the reason, under silver/purchases_quarantine/year=/month=/day=/hour=/."
            ),
            metadata={"contract": f"contracts/lakehouse.odcs.yaml#{QUARANTINE_TABLE}"},
        ),
    ],
    partitions_def=hourly_partitions,
    backfill_policy=BackfillPolicy.single_run(),
)
def silver_purchases(
    context: AssetExecutionContext,
    pyspark: LazyPySparkResource,
    lake: LakeResource,
    catalog: CatalogResource,
    silver_runner: SilverRunnerResource,
) -> Iterator[MaterializeResult[None]]:
    window = context.partition_time_window
    hours = hours_between(window.start, window.end)
    the_lake = lake.lake()
    timings = Timings()
    job_metadata: dict[str, Any] = {}
    if silver_runner.runner == "emr-serverless" and hours:
        result, job_metadata = run_on_emr_serverless(context, silver_runner, lake.root, the_lake, hours, timings)
    else:
        with timings.span("Spark session"):
            spark = pyspark.spark_session
        result = build_silver(spark, the_lake, hours, timings)
        # where the job ran: a Spark Connect server's URL, or the master of the run's own Spark
        job_metadata = {
            "spark_master": pyspark.spark_config.get("spark.remote", pyspark.spark_config.get("spark.master"))
        }
    context.log.info(
        f"silver {hours[0].key}..{hours[-1].key}: {reconciliation(result)}; revenue {result.revenue}"
        if hours
        else "silver: no hours in the window"
    )
    glue = catalog.catalog()
    with timings.span("Glue registration"):
        registered = {
            table: glue.register(
                CatalogTable(name=table, contract_table=table, location=the_lake.uri(location)),
                [h.hour.path_values for h in result.hours if (h.quarantined if quarantine else h.silver_rows)],
            )
            for table, location, quarantine in ((SILVER_TABLE, SILVER, False), (QUARANTINE_TABLE, QUARANTINE, True))
        }

    def glue_metadata(table: str) -> dict[str, Any]:
        return {
            "glue_table": f"{catalog.database}.{table}",
            "glue_partitions_added": registered[table].partitions_added,
        }

    with timings.span("metadata and previews"):
        silver_meta = {**silver_metadata(the_lake, result), **glue_metadata(SILVER_TABLE)}
        quarantine_meta = {**quarantine_metadata(the_lake, result), **glue_metadata(QUARANTINE_TABLE)}
    yield MaterializeResult(asset_key=SILVER_PURCHASES, metadata={**silver_meta, **job_metadata, **timings.metadata()})
    yield MaterializeResult(asset_key=SILVER_QUARANTINE, metadata=quarantine_meta)


def run_on_emr_serverless(
    context: AssetExecutionContext,
    runner: SilverRunnerResource,
    lake_root: str,
    lake: Lake,
    hours: Sequence[Hour],
    timings: Timings,
) -> tuple[SilverResult, dict[str, Any]]:
    """Silver as an EMR Serverless job run (Pipes): its counts as the job reported them, and what
    the job and the run add to the silver table's metadata (job run id, Spark master, executors)."""
    settings = runner.settings()
    with timings.span("EMR Serverless job run"):
        invocation = runner.pipes_client().run(
            context=context,
            start_job_run_params=start_job_run_params(settings, lake_root, hours),
        )
    return reported_result(invocation.get_results(), dict(invocation.metadata), lake, settings.emr_logs_uri, timings)


def reported_result(
    results: Sequence[object], run_metadata: dict[str, Any], lake: Lake, logs_uri: str | None, timings: Timings
) -> tuple[SilverResult, dict[str, Any]]:
    """The silver result a job reported through Pipes (``jobs/silver_entry.py``), its timings added
    to ``timings``, and what it adds to silver's metadata; a Failure naming the driver's logs when
    the job reported no counts (it died before reporting, or is not silver's entry point)."""
    reported = {r.asset_key: r.metadata or {} for r in results if isinstance(r, MaterializeResult)}
    if SILVER_PURCHASES not in reported or "hours" not in reported[SILVER_PURCHASES]:
        raise Failure(
            "the EMR Serverless job ended without reporting silver/purchases' counts through Pipes; "
            f"its driver's log is under {logs_uri}",
            metadata=run_metadata,
        )
    job = reported[SILVER_PURCHASES]
    result = result_from_counts(_raw(job["hours"]), lake)
    for name, seconds in _raw(job.get("job_timings", {})).items():
        timings.add(f"job: {name}", float(seconds))
    extra = {key: job[key] for key in ("spark_master", "executors") if key in job}
    return result, {**extra, **run_metadata}


def _raw(value: Any) -> Any:
    return value.value if isinstance(value, MetadataValue) else value


def reconciliation(result: SilverResult) -> str:
    return (
        f"bronze {result.bronze_rows} = silver {result.silver_rows} + quarantined {result.quarantined} "
        f"+ duplicates removed {result.duplicates_removed}"
    )


def per_hour_table(hours: Sequence[HourCounts]) -> str:
    rows = [
        f"| {h.hour.key} | {h.bronze_rows} | {h.silver_rows} | {h.quarantined} | {h.duplicates_removed} | {h.revenue} |"
        for h in hours
    ]
    return (
        "| hour | bronze | silver | quarantined | duplicates removed | revenue |\n|---|---:|---:|---:|---:|---:|\n"
        + ("\n".join(rows))
    )


def sample(lake: Lake, location: str, hours: Sequence[HourCounts], quarantine: bool = False) -> arrow.Table | None:
    """A few rows of the first hour that has some, read back from the lake."""
    for h in hours:
        if not (h.quarantined if quarantine else h.silver_rows):
            continue
        files = [f for f in lake.files(f"{location}/{h.hour.path}") if f.endswith(".parquet")]
        if files:
            table: arrow.Table = pq.read_table(lake.path(files[0]), filesystem=lake.fs)
            return table.slice(0, PREVIEW_ROWS)
    return None


def unknown_products(lake: Lake, hours: Sequence[HourCounts]) -> dict[str, int]:
    """Purchases per product id the products dimension does not describe (category 'unknown'):
    kept in silver and counted here, never dropped. Reads two columns of the hours written."""
    files = [f for h in hours if h.silver_rows for f in lake.files(f"{SILVER}/{h.hour.path}") if f.endswith(".parquet")]
    if not files:
        return {}
    table = ds.dataset([lake.path(f) for f in files], filesystem=lake.fs, format="parquet").to_table(
        columns=["product_id"], filter=pc.field("category") == UNKNOWN_CATEGORY
    )
    counts = pc.value_counts(table.column("product_id")).to_pylist()
    return {str(c["values"]): int(c["counts"]) for c in sorted(counts, key=lambda c: (-c["counts"], c["values"]))}


def silver_metadata(lake: Lake, result: SilverResult) -> dict[str, Any]:
    rows = sample(lake, SILVER, result.hours)
    unknown = unknown_products(lake, result.hours)
    return {
        "unknown_product_purchases": sum(unknown.values()),
        "unknown_products": MetadataValue.json(dict(list(unknown.items())[:20])),
        "dagster/row_count": result.silver_rows,
        "dagster/column_schema": column_schema(SILVER_TABLE),
        "location": MetadataValue.path(result.silver_location),
        "hours": len(result.hours),
        "bronze_rows": result.bronze_rows,
        "duplicates_removed": result.duplicates_removed,
        "quarantined": result.quarantined,
        "reconciliation": reconciliation(result),
        "revenue": MetadataValue.float(float(result.revenue)),
        "revenue_exact": str(result.revenue),
        "per_hour": MetadataValue.md(per_hour_table(result.hours)),
        "preview": preview(rows) if rows is not None else MetadataValue.md("(no rows)"),
    }


def quarantine_metadata(lake: Lake, result: SilverResult) -> dict[str, Any]:
    rows = sample(lake, QUARANTINE, result.hours, quarantine=True)
    return {
        "dagster/row_count": result.quarantined,
        "dagster/column_schema": column_schema(QUARANTINE_TABLE),
        "location": MetadataValue.path(result.quarantine_location),
        "quarantined_share": MetadataValue.float(
            result.quarantined / result.bronze_rows if result.bronze_rows else 0.0
        ),
        "reasons": MetadataValue.json(dict(result.reasons.most_common())),
        "per_hour": MetadataValue.md(per_hour_table(result.hours)),
        "preview": preview(rows) if rows is not None else MetadataValue.md("(no rows)"),
    }
