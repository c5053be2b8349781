"""Rebuild the products dimension when a file set brings products.

``reference/products`` is unpartitioned and the file drop's silver products are partitioned by
set, so no job holds both: this sensor watches the file drop's products and launches the
dimension's own job after each set that wrote some. Hours built afterwards are enriched with the
new rows; hours already in silver keep the dimension they were built with until they are rerun.
"""

from dagster import (
    AssetKey,
    DefaultSensorStatus,
    EventLogEntry,
    RunRequest,
    SensorEvaluationContext,
    SkipReason,
    asset_sensor,
    define_asset_job,
)

FILEDROP_PRODUCTS = AssetKey(["filedrop", "silver", "products"])

reference_products_job = define_asset_job(
    "reference_products",
    selection=[AssetKey(["reference", "products"])],
    description="The products dimension: the committed CSV with the file drop's products applied.",
)


@asset_sensor(
    asset_key=FILEDROP_PRODUCTS,
    job=reference_products_job,
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Rebuilds reference/products after a file set wrote products.",
)
def products_changed(context: SensorEvaluationContext, asset_event: EventLogEntry) -> RunRequest | SkipReason:
    materialization = asset_event.asset_materialization
    rows = materialization.metadata.get("dagster/row_count") if materialization else None
    if rows is None or not rows.value:
        return SkipReason(f"set {asset_event.dagster_event and asset_event.dagster_event.partition} wrote no products")
    partition = materialization.partition if materialization else None
    return RunRequest(run_key=f"products:{asset_event.run_id}:{partition}", tags={"cart/trigger": "products_changed"})
