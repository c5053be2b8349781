"""The products_changed sensor: a file set that wrote products rebuilds the products dimension."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from dagster import AssetMaterialization, DagsterInstance, RunRequest, SkipReason, build_sensor_context

from cart_lakehouse.definitions import defs
from cart_lakehouse.sensors.products_changed import FILEDROP_PRODUCTS, products_changed


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as instance:
        yield instance


def tick(instance: DagsterInstance, cursor: str | None = None) -> tuple[RunRequest | SkipReason | None, str | None]:
    context = build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
    results = list(products_changed(context) or [])  # an asset sensor's evaluation yields
    assert len(results) <= 1, results
    return (results[0] if results else None), context.cursor


def wrote(instance: DagsterInstance, set_id: str, rows: int) -> None:
    instance.report_runless_asset_event(
        AssetMaterialization(asset_key=FILEDROP_PRODUCTS, partition=set_id, metadata={"dagster/row_count": rows})
    )


def test_a_set_with_products_launches_the_dimension_once(instance: DagsterInstance) -> None:
    instance.add_dynamic_partitions("filedrop_sets", ["20261101T000000Z-aaaaaaaa"])
    wrote(instance, "20261101T000000Z-aaaaaaaa", 12)

    request, cursor = tick(instance)

    assert isinstance(request, RunRequest)
    assert request.job_name in (None, "reference_products")
    assert request.tags["cart/trigger"] == "products_changed"
    assert "20261101T000000Z-aaaaaaaa" in str(request.run_key)
    again, _ = tick(instance, cursor)  # the same event is not seen twice
    assert not isinstance(again, RunRequest)


def test_a_set_without_products_launches_nothing(instance: DagsterInstance) -> None:
    instance.add_dynamic_partitions("filedrop_sets", ["20261101T000000Z-bbbbbbbb"])
    wrote(instance, "20261101T000000Z-bbbbbbbb", 0)

    result, _ = tick(instance)

    assert isinstance(result, SkipReason)
    assert "wrote no products" in str(result.skip_message)


def test_products_followed_by_a_set_without_them_before_the_next_tick_still_rebuild(instance: DagsterInstance) -> None:
    # two sets between two ticks: the first brought products, the second none; the newest event
    # alone would say "no products" and the first set's products would never reach the dimension
    instance.add_dynamic_partitions("filedrop_sets", ["20261101T000000Z-cccccccc", "20261101T000100Z-dddddddd"])
    wrote(instance, "20261101T000000Z-cccccccc", 7)
    wrote(instance, "20261101T000100Z-dddddddd", 0)

    request, cursor = tick(instance)

    assert isinstance(request, RunRequest)
    assert "20261101T000000Z-cccccccc" in str(request.run_key)
    again, _ = tick(instance, cursor)
    assert not isinstance(again, RunRequest)


def test_the_dimension_job_materializes_reference_products() -> None:
    job = defs.resolve_job_def("reference_products")
    assert [str(k.to_user_string()) for k in job.asset_layer.executable_asset_keys] == ["reference/products"]
