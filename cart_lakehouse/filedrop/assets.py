"""The file drop's assets: one partition per file set, landing → bronze → silver → KPIs → archive.

- ``filedrop/bronze``: reads the set's files from the lake bucket (each size checked before it is
  read), validates the whole set against ``contracts/filedrop.odcs.yaml``, and writes each file as
  received. A set that breaks a rule is not half-loaded: its files move to
  ``quarantine/landing/<set>/`` with ``report.json``, the file-drop topic is told, and the step
  fails with the report (no retry: the same files would fail again). Transient AWS errors are
  retried three times with backoff (the seeds' rule).
- ``filedrop/silver/<table>``: each file typed per the contract, one folder per set.
- ``filedrop/kpis/category_kpis`` and ``order_kpis``: every order date the set touches recomputed
  from all of silver, merged into the Delta tables and pushed to DynamoDB.
- ``filedrop/archive``: once the KPIs and their checks passed, the files move to
  ``archive/<date>/<set>/`` and people are told what the set changed.
"""

import json
from collections.abc import Iterator
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow.compute as pc
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSelection,
    AssetSpec,
    Backoff,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    RetryPolicy,
    asset,
    define_asset_job,
    multi_asset,
)

from cart_aws.aws import AwsClients
from cart_aws.metrics import CloudWatchMetrics
from cart_aws.settings import AwsSettings
from cart_lakehouse.checks.schemas import arrow_schema
from cart_lakehouse.filedrop import kpis
from cart_lakehouse.filedrop.csvfile import FileRejected, check_size, typed
from cart_lakehouse.filedrop.landing import (
    FileSet,
    Landing,
    Notice,
    Outcome,
    Replaced,
    mark_redrop,
    notify,
    redrop_mark,
    redrop_of,
)
from cart_lakehouse.filedrop.layout import (
    KPI_TABLES,
    TABLES,
    archive_key,
    bronze_dir,
    file_name,
    kpi_table,
    quarantine_key,
    quarantine_report_key,
    set_redrop,
    silver_dir,
)
from cart_lakehouse.filedrop.partitions import FILEDROP_JOB, FORCE_RUN_CONFIG, SERIAL_TAG, filedrop_sets
from cart_lakehouse.filedrop.store import known_ids, read_sets, write_parquet
from cart_lakehouse.filedrop.validation import SetValidation, references, validate_set
from cart_lakehouse.lake import Lake
from cart_lakehouse.metadata import column_schema, preview
from cart_lakehouse.resources import AwsResource, LakeResource
from cart_lakehouse.timings import Timings

OWNER = "team:cart-platform"
GROUP = "filedrop"
LANDING_FILES = AssetKey(["landing", "files"])
BRONZE = AssetKey(["filedrop", "bronze"])
SILVER = {table: AssetKey(["filedrop", "silver", table]) for table in TABLES}
KPIS = {name: AssetKey(["filedrop", "kpis", name]) for name in KPI_TABLES}
ARCHIVE = AssetKey(["filedrop", "archive"])
METRICS_DIMENSIONS = {"Pipeline": "filedrop"}
# transient AWS failures (throttling, an outage): three more tries, 2 s, 4 s, 8 s apart
TRANSIENT_RETRIES = RetryPolicy(max_retries=3, delay=2, backoff=Backoff.EXPONENTIAL)

landing_files = AssetSpec(
    key=LANDING_FILES,
    group_name=GROUP,
    owners=[OWNER],
    kinds={"s3", "csv"},
    description=(
        "CSV files producers drop under s3://<lake bucket>/landing/orders/, landing/order_items/ and "
        "landing/products/. S3 events reach the landing queue; the landing_files sensor groups the files "
        "into complete sets (every order item's order and product present or already loaded), one partition each."
    ),
)


class BronzeConfig(Config):
    force: bool = False
    """Load an incomplete set anyway: order items whose order or product is missing are reported as
    warnings, not failures (their category is 'unknown'; items without an order get no date)."""


def _reject(
    context: AssetExecutionContext,
    file_set: FileSet,
    validation: SetValidation,
    landing: Landing,
    clients: AwsClients,
    lake: Lake,
    located: dict[str, str],
) -> Failure:
    """Quarantine a failing set, write and send its report; the Failure the step raises.

    ``located``: where each file was read (landing, or where an earlier run moved it; those stay)."""
    settings = clients.settings
    moves = {
        f.key: quarantine_key(file_set.set_id, f.key) if located.get(f.key, f.key) == f.key else located[f.key]
        for f in file_set.files
    }
    # where the files go, saved before they move: a retry after a partial move finds them
    Outcome(file_set.set_id, "quarantining", moves).save(lake)
    replaced = landing.move_all(moves, {f.key: f.etag for f in file_set.files})
    report = {**validation.report(), "set_id": file_set.set_id, "quarantined": moves, "replaced": replaced}
    report_uri = landing.put_json(quarantine_report_key(file_set.set_id), report)
    Outcome(file_set.set_id, "rejected", moves, summary={"report": report_uri, "replaced": replaced}).save(lake)
    rules = sorted({f.rule for f in validation.failures})
    notify(
        clients.sns,
        clients.topic_arn(settings.filedrop_topic),
        Notice(
            file_set.set_id,
            "rejected",
            [f.key for f in file_set.files],
            validation.rows,
            {"rules": rules, "report": report_uri, "quarantine": sorted(moves.values())},
        ),
    )
    CloudWatchMetrics(clients.cloudwatch).put({"SetsRejected": 1}, METRICS_DIMENSIONS)
    context.log.error(f"set {file_set.set_id} rejected ({', '.join(rules)}); report: {report_uri}")
    return Failure(
        description=f"set {file_set.set_id} rejected: {', '.join(rules)}. Files quarantined; report {report_uri}",
        metadata={
            "report": MetadataValue.md(validation.markdown()),
            "rules_broken": MetadataValue.json(rules),
            "report_uri": MetadataValue.path(report_uri),
        },
        allow_retries=False,
    )


@asset(
    key=BRONZE,
    group_name=GROUP,
    deps=[LANDING_FILES],
    owners=[OWNER],
    kinds={"s3", "parquet"},
    partitions_def=filedrop_sets,
    retry_policy=TRANSIENT_RETRIES,
    description=(
        "A file set validated as a whole against contracts/filedrop.odcs.yaml and kept as received "
        "(every column a string) under bronze/filedrop/<table>/set_id=<set>/. A set breaking any rule is "
        "moved to quarantine/landing/<set>/ with report.json and the run fails with the report."
    ),
    metadata={"contract": "contracts/filedrop.odcs.yaml"},
)
def filedrop_bronze(
    context: AssetExecutionContext, config: BronzeConfig, aws: AwsResource, lake: LakeResource
) -> MaterializeResult[None]:
    set_id = context.partition_key
    the_lake, clients, settings = lake.lake(), aws.clients(), aws.settings()
    timings = Timings()
    file_set = FileSet.load(the_lake, set_id)
    the_lake.delete(set_redrop(set_id))  # a rerun decides again
    repeated = None if config.force else redrop_of(the_lake, file_set)
    if repeated:
        mark_redrop(the_lake, set_id, repeated)
        context.log.info(f"set {set_id} repeats the latest set in silver, {repeated}, byte for byte: nothing to load")
        earlier = Outcome.load(the_lake, repeated)
        rows = dict(earlier.summary.get("rows", {})) if earlier else {}
        return MaterializeResult(
            metadata={
                "dagster/row_count": 0,
                "rows": MetadataValue.json(rows),
                "redrop_of": repeated,
                "files": MetadataValue.json([f.key for f in file_set.files]),
                "note": f"the same files (table, ETag, size) as {repeated}, the latest set in silver: no KPI changes",
            }
        )
    landing = Landing(clients.s3, settings.lake_bucket)
    outcome = Outcome.load(the_lake, set_id)
    data: dict[str, bytes] = {}
    located: dict[str, str] = {}
    rejected: list[FileRejected] = []
    with timings.span("read files"):
        for f in file_set.files:
            try:
                where = landing.locate(f.key, outcome, f.etag, [quarantine_key(set_id, f.key)])
                if where is not None:
                    size = landing.size(where)
                    check_size(f.key, size or 0, settings.filedrop_max_file_bytes)
                    # the very bytes the set was formed with, while they are still in landing
                    data[f.key] = landing.read(where, f.etag if where == f.key else "")
            except FileRejected as too_big:
                rejected.append(too_big)
            except Replaced as replaced:
                raise Failure(
                    description=(
                        f"set {set_id} cannot be loaded as it was formed: {replaced}. The newer upload is a file "
                        "of its own (the landing_files sensor puts it in another set); this set's other files "
                        "stay in landing/. To load them, put them again (with the file replaced, if it belongs "
                        "with them): that forms a new set."
                    ),
                    metadata={"file": f.key, "set_etag": replaced.etag, "landed_etag": replaced.current},
                    allow_retries=False,
                ) from None
            if where is None:
                raise Failure(
                    description=f"{f.key} of set {set_id} is neither in landing nor where an earlier run moved it",
                    allow_retries=False,
                )
            located[f.key] = where
    with timings.span("validate"):
        validation = validate_set(
            data,
            known_order_ids=known_ids(the_lake, "orders", "order_id"),
            known_product_ids=known_ids(the_lake, "products", "id"),
            force=config.force,
            rejected=rejected,
        )
    if not validation.passed and not config.force and _only_missing_references(validation):
        # still waiting for orders or products: not bad input, so nothing is quarantined (once they
        # have loaded, a rerun of this partition loads it; or it is forced through)
        raise Failure(
            description=(
                f"set {set_id} is incomplete: "
                f"{', '.join(f'{f.rule} ({f.failed_rows} rows)' for f in validation.failures)}. "
                "Load the missing orders or products first (drop them: they form a set of their own), "
                f"then run this partition again; or load it anyway with the run config {json.dumps(FORCE_RUN_CONFIG)}"
            ),
            metadata={"report": MetadataValue.md(validation.markdown())},
            allow_retries=False,
        )
    if not validation.passed:
        raise _reject(context, file_set, validation, landing, clients, the_lake, located)
    with timings.span("write"):
        for key, raw in validation.bronze.items():
            table = file_set_table(file_set, key)
            # the whole name: drop.csv and drop.CSV are two files of the set, not one written twice
            write_parquet(the_lake, f"{bronze_dir(table, set_id)}/{file_name(key)}.parquet", raw)
    for warning in validation.warnings:
        context.log.warning(f"set {set_id} forced through: {warning.rule} ({warning.failed_rows} rows)")
    return MaterializeResult(
        metadata={
            "dagster/row_count": sum(validation.rows.values()),
            "rows": MetadataValue.json(validation.rows),
            "files": MetadataValue.json([f.key for f in file_set.files]),
            "forced": config.force,
            "warnings": MetadataValue.md(validation.markdown()) if validation.warnings else "none",
            **timings.metadata(),
        }
    )


def _only_missing_references(validation: SetValidation) -> bool:
    """Whether every rule the set broke is a reference to an order or product not loaded (yet)."""
    referential = {r.rule for r in references()}
    return all(f.rule in referential for f in validation.failures)


def file_set_table(file_set: FileSet, key: str) -> str:
    for f in file_set.files:
        if f.key == key and f.table:
            return f.table
    raise KeyError(f"{key} is not a file of set {file_set.set_id} with a known table")


@multi_asset(
    name="filedrop_silver",
    specs=[
        AssetSpec(
            key=SILVER[table],
            group_name=GROUP,
            deps=[BRONZE],
            owners=[OWNER],
            kinds={"parquet"},
            description=(
                f"The set's {table} typed per contracts/filedrop.odcs.yaml#{table}, under "
                f"silver/filedrop/{table}/set_id=<set>/; readers take the latest set's row per key."
            ),
            metadata={"contract": f"contracts/filedrop.odcs.yaml#{table}"},
        )
        for table in TABLES
    ],
    partitions_def=filedrop_sets,
)
def filedrop_silver(context: AssetExecutionContext, lake: LakeResource) -> Iterator[MaterializeResult[None]]:
    set_id = context.partition_key
    the_lake = lake.lake()
    repeated = redrop_mark(the_lake, set_id)
    for table in TABLES:
        if repeated:
            the_lake.delete(silver_dir(table, set_id))
            yield MaterializeResult(asset_key=SILVER[table], metadata={"dagster/row_count": 0, "redrop_of": repeated})
            continue
        raw = read_sets(the_lake, "bronze", table, [set_id])
        path = f"{silver_dir(table, set_id)}/data.parquet"
        if raw is None:
            the_lake.delete(silver_dir(table, set_id))
            yield MaterializeResult(asset_key=SILVER[table], metadata={"dagster/row_count": 0, "note": "no file"})
            continue
        rows, failures = typed(table, raw.drop_columns(["set_id"]))
        if failures:  # bronze validated these very rows: a difference is a bug, not bad input
            raise Failure(description=f"{table}: typing failed after validation passed: {failures[:3]}")
        rows = rows.cast(arrow_schema(table, contract="filedrop"))  # required columns non-null, as validated
        location = write_parquet(the_lake, path, rows)
        yield MaterializeResult(
            asset_key=SILVER[table],
            metadata={
                "dagster/row_count": rows.num_rows,
                "dagster/column_schema": column_schema(table, "filedrop"),
                "location": MetadataValue.path(location),
                "preview": preview(rows, 5),
            },
        )


def dynamodb_tables(settings: AwsSettings) -> dict[str, str]:
    """The DynamoDB table each KPI table is pushed to."""
    return {"category_kpis": settings.category_kpis_table, "order_kpis": settings.order_kpis_table}


@multi_asset(
    name="filedrop_kpis",
    specs=[
        AssetSpec(
            key=KPIS[name],
            group_name=GROUP,
            deps=list(SILVER.values()),
            owners=[OWNER],
            kinds={"deltalake", "dynamodb"},
            description=description,
            metadata={"contract": f"contracts/kpis.odcs.yaml#{name}"},
        )
        for name, description in (
            (
                "category_kpis",
                "Daily revenue, average order value and return rate per category and order date: a Delta table "
                "(kpis/category_kpis, merged on category + order_date) and the DynamoDB category KPIs table.",
            ),
            (
                "order_kpis",
                "Orders, revenue, items sold, return rate and customers per order date: a Delta table "
                "(kpis/order_kpis, merged on order_date) and the DynamoDB order KPIs table.",
            ),
        )
    ],
    partitions_def=filedrop_sets,
    retry_policy=TRANSIENT_RETRIES,
)
def filedrop_kpis(
    context: AssetExecutionContext, lake: LakeResource, aws: AwsResource
) -> Iterator[MaterializeResult[None]]:
    set_id = context.partition_key
    the_lake, clients, on = lake.lake(), aws.clients(), lake.settings()
    repeated = redrop_mark(the_lake, set_id)
    if repeated:
        for name in KPI_TABLES:
            yield MaterializeResult(
                asset_key=KPIS[name],
                metadata={"redrop_of": repeated, "order_dates": MetadataValue.json([]), "note": "nothing recomputed"},
            )
        return
    timings = Timings()
    with timings.span("dates"):
        dates = kpis.touched_dates(the_lake, set_id)
    with timings.span("compute"):
        computed = kpis.compute_kpis(the_lake, dates, set_id)
    dynamo_tables = dynamodb_tables(aws.settings())
    results: dict[str, dict[str, Any]] = {}
    for name in KPI_TABLES:
        rows = computed.category if name == "category_kpis" else computed.order
        with timings.span(f"{name}: merge delta"):
            merged = kpis.merge_kpis(the_lake, name, rows, dates, on)
        with timings.span(f"{name}: push dynamodb"):
            # the rows as Delta holds them after the merge: unchanged rows keep the set that last
            # changed them, so a re-dropped set leaves every DynamoDB item as it was
            current = kpis.read_kpis(the_lake, name, dates, on)
            pushed = kpis.push_kpis(clients, dynamo_tables[name], current, dates)
        results[name] = {"rows": rows, "merged": merged, "pushed": pushed, "current": current}
    unknown = computed.items_without_order
    if unknown:
        context.log.warning(
            f"{unknown} order items belong to no known order, so they have no order date and are in no KPI "
            f"(e.g. order_id, product_id: {list(computed.items_without_order_sample)[:3]})"
        )
    for name in KPI_TABLES:
        r = results[name]
        metadata: dict[str, Any] = {
            "dagster/row_count": r["current"].num_rows,
            "dagster/column_schema": column_schema(name, "kpis"),
            "order_dates": MetadataValue.json([d.isoformat() for d in dates]),
            "merge": MetadataValue.json(_jsonable(r["merged"])),
            "dynamodb": MetadataValue.json(_jsonable(r["pushed"])),
            "dynamodb_table": dynamo_tables[name],
            "delta_table": MetadataValue.path(the_lake.uri(kpi_table(name))),
            "preview": preview(r["current"], 10),
            **timings.metadata(),
        }
        revenue_column = "daily_revenue" if name == "category_kpis" else "total_revenue"
        if r["current"].num_rows:
            metadata["revenue"] = round(float(pc.sum(r["current"].column(revenue_column)).as_py() or 0), 2)
        if name == "order_kpis":
            metadata["items_without_order"] = unknown
        else:
            metadata["unknown_product_items"] = computed.unknown_product_items
        yield MaterializeResult(asset_key=KPIS[name], metadata=metadata)


def _jsonable(value: Any) -> Any:
    return asdict(value) if is_dataclass(value) and not isinstance(value, type) else value


@asset(
    key=ARCHIVE,
    group_name=GROUP,
    deps=list(KPIS.values()),
    owners=[OWNER],
    kinds={"s3", "sns"},
    partitions_def=filedrop_sets,
    retry_policy=TRANSIENT_RETRIES,
    description=(
        "The set's files moved from landing/ to archive/<date>/<set>/ once its KPIs and their checks passed "
        "(each copy verified before the landed file is deleted), and the file-drop topic told."
    ),
)
def filedrop_archive(context: AssetExecutionContext, lake: LakeResource, aws: AwsResource) -> MaterializeResult[None]:
    set_id = context.partition_key
    the_lake, clients, settings = lake.lake(), aws.clients(), aws.settings()
    file_set = FileSet.load(the_lake, set_id)
    landing = Landing(clients.s3, settings.lake_bucket)
    day = datetime.now(UTC).date().isoformat()
    earlier = Outcome.load(the_lake, set_id)
    moves = {
        f.key: (earlier.moved[f.key] if earlier and f.key in earlier.moved else archive_key(day, set_id, f.key))
        for f in file_set.files
    }
    # where the files go, saved before they move: a retry (after midnight too) moves the rest there
    Outcome(set_id, "archiving", moves, summary=earlier.summary if earlier else {}).save(the_lake)
    replaced = landing.move_all(moves, {f.key: f.etag for f in file_set.files})
    for key in replaced:
        context.log.warning(
            f"{key} of set {set_id} was replaced by a newer upload before it was archived: the set's version is "
            "gone (its rows are loaded); the newer upload stays in landing/ for its own set"
        )
    repeated = redrop_mark(the_lake, set_id)
    earlier = Outcome.load(the_lake, repeated) if repeated else None
    # a re-drop holds the rows of the set it repeats (loaded then, not again now)
    rows = dict(earlier.summary["rows"]) if earlier else {table: _rows(the_lake, table, set_id) for table in TABLES}
    dates = kpis.touched_dates(the_lake, set_id)
    Outcome(set_id, "loaded", moves, summary={"rows": rows, "redrop_of": repeated, "replaced": replaced}).save(the_lake)
    notify(
        clients.sns,
        clients.topic_arn(settings.filedrop_topic),
        Notice(
            set_id,
            "loaded",
            [f.key for f in file_set.files],
            rows,
            {
                "order_dates": [d.isoformat() for d in dates],
                "kpi_tables": list(KPI_TABLES),
                "archive": moves,
                "redrop_of": repeated,
            },
        ),
    )
    CloudWatchMetrics(clients.cloudwatch).put(
        {"SetsProcessed": 1, "RowsLoaded": sum(rows.values())}, METRICS_DIMENSIONS
    )
    context.log.info(f"set {set_id}: {len(moves)} files archived, {sum(rows.values())} rows")
    return MaterializeResult(
        metadata={
            "files": MetadataValue.json(moves),
            "rows": MetadataValue.json(rows),
            "order_dates": MetadataValue.json([d.isoformat() for d in dates]),
        }
    )


def _rows(lake: Lake, table: str, set_id: str) -> int:
    found = read_sets(lake, "silver", table, [set_id])
    return 0 if found is None else found.num_rows


FILEDROP_ASSETS = AssetSelection.assets(BRONZE, *SILVER.values(), *KPIS.values(), ARCHIVE)

filedrop_job = define_asset_job(
    FILEDROP_JOB,
    selection=FILEDROP_ASSETS,
    description="One file set: validate (or quarantine), bronze, silver, KPIs (Delta + DynamoDB), archive.",
    tags={SERIAL_TAG: "true"},  # one set at a time (partitions.py says why)
)
