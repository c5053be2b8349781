"""A small Dagster code location with the lakehouse's layer groups and mart checks, for the health
strip's test: it runs Dagster's real webserver and GraphQL over an instance the test fills."""

from __future__ import annotations

from dagster import AssetCheckResult, AssetKey, AssetSpec, Definitions, asset_check

SPECS = [
    AssetSpec(["bronze", "purchases"], group_name="bronze"),
    AssetSpec(["silver", "purchases"], group_name="silver", deps=[AssetKey(["bronze", "purchases"])]),
    AssetSpec(["gold", "sales_hourly"], group_name="gold", deps=[AssetKey(["silver", "purchases"])]),
    AssetSpec(["gold", "sales_performance"], group_name="marts", deps=[AssetKey(["silver", "purchases"])]),
    AssetSpec(["gold", "items_category_performance"], group_name="marts", deps=[AssetKey(["silver", "purchases"])]),
]


@asset_check(asset=AssetKey(["gold", "sales_performance"]), name="revenue_matches_silver")
def revenue_matches_silver() -> AssetCheckResult:
    return AssetCheckResult(passed=True)


@asset_check(asset=AssetKey(["gold", "sales_hourly"]), name="contract")
def contract() -> AssetCheckResult:
    return AssetCheckResult(passed=True)


def _freshness(key: list[str]):  # type: ignore[no-untyped-def]
    @asset_check(asset=AssetKey(key), name="fresh_vs_silver", blocking=False)
    def fresh_vs_silver() -> AssetCheckResult:
        return AssetCheckResult(passed=True)

    return fresh_vs_silver


CHECKS = [revenue_matches_silver, contract, _freshness(["gold", "sales_performance"])]
CHECKS.append(_freshness(["gold", "items_category_performance"]))
defs = Definitions(assets=SPECS, asset_checks=CHECKS)
