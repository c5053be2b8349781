"""Rebuild the products dimension when a file set brings products.

``reference/products`` is unpartitioned and the file drop's silver products are partitioned by
set, so no job holds both: this sensor watches the file drop's products and launches the
dimension's own job after each set that wrote some. Hours built afterwards are enriched with the
new rows; hours already in silver keep the dimension they were built with until they are rerun.

Every materialization since the last tick is looked at, not only the newest (what an
``asset_sensor`` does): a set with products followed, before the next tick, by a set without
them must still rebuild the dimension.
"""

from collections.abc import Iterator

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SkipReason,
    define_asset_job,
    sensor,
)

FILEDROP_PRODUCTS = AssetKey(["filedrop", "silver", "products"])
BATCH = 100  # materializations read per query

reference_products_job = define_asset_job(
    "reference_products",
    selection=[AssetKey(["reference", "products"])],
    description="The products dimension: the committed CSV with the file drop's products applied.",
)


@sensor(
    job=reference_products_job,
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Rebuilds reference/products after a file set wrote products.",
)
def products_changed(context: SensorEvaluationContext) -> Iterator[RunRequest | SkipReason]:
    after = int(context.cursor) if context.cursor and context.cursor.isdigit() else None
    with_products: list[str] = []
    without: list[str] = []
    last = after
    while True:
        records = context.instance.fetch_materializations(
            AssetRecordsFilter(asset_key=FILEDROP_PRODUCTS, after_storage_id=last), limit=BATCH, ascending=True
        ).records
        for record in records:
            last = record.storage_id
            materialization = record.asset_materialization
            rows = materialization.metadata.get("dagster/row_count") if materialization else None
            partition = str(materialization.partition if materialization else None)
            (with_products if rows is not None and rows.value else without).append(partition)
        if len(records) < BATCH:
            break
    if last is None or last == after:
        yield SkipReason(f"no new materialization of {FILEDROP_PRODUCTS.to_user_string()}")
        return
    context.update_cursor(str(last))
    if not with_products:
        yield SkipReason(f"set {', '.join(without)} wrote no products")
        return
    # one rebuild reads every set's products: one run for all the sets since the last tick
    yield RunRequest(
        run_key=f"products:{last}:{with_products[-1]}",
        tags={"cart/trigger": "products_changed", "cart/filedrop_sets": ",".join(with_products)[:200]},
    )
