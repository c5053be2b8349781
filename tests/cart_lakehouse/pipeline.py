"""Materializing the lakehouse in-process for tests: the asset selection from reference data to the
marts, and one run of it over an hour or a window of hours (the single-run backfill Dagster runs).
Shared by the pipeline tests and the dashboard's browser test, which builds its lake this way."""

from __future__ import annotations

from typing import Any

from dagster import AssetSelection, ExecuteInProcessResult, materialize

from cart_lakehouse.definitions import ASSETS, CHECKS
from cart_lakehouse.partitions import Hour

LAKEHOUSE = AssetSelection.groups("reference", "bronze", "silver", "gold", "star", "marts")


def run(
    resources: dict[str, Any], *hours: Hour, selection: AssetSelection = LAKEHOUSE, raise_on_error: bool = True
) -> ExecuteInProcessResult:
    """Materialize the lakehouse for one hour or a window of consecutive hours (a single run)."""
    window = {"dagster/asset_partition_range_start": hours[0].key, "dagster/asset_partition_range_end": hours[-1].key}
    kwargs: dict[str, Any] = {"partition_key": hours[0].key} if len(hours) == 1 else {"tags": window}
    return materialize(
        [*ASSETS, *CHECKS], selection=selection, resources=resources, raise_on_error=raise_on_error, **kwargs
    )
