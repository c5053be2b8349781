"""A mart more than CART_MART_FRESHNESS_HOURS behind silver fails its fresh_vs_silver check (WARN), by
hand or through the mart_freshness sensor, which reports the evaluation outside any run and alerts once
when the mart turns stale."""

import time

from dagster import (
    AssetCheckKey,
    AssetCheckSeverity,
    AssetKey,
    AssetMaterialization,
    AssetSelection,
    AssetSpec,
    DagsterInstance,
    SensorResult,
    SkipReason,
    build_sensor_context,
    materialize,
)

from cart_api.settings import Settings
from cart_aws.aws import AwsClients
from cart_lakehouse.checks.freshness import CHECK_NAME, FRESHNESS_CHECKS, MARTS, SOURCE
from cart_lakehouse.resources import AwsResource
from cart_lakehouse.sensors.freshness import mart_freshness
from tests.cart_lakehouse.sensors.test_alerts import alerts, subscribe_alerts

SALES, ITEMS = MARTS


def materialized(instance: DagsterInstance, key: AssetKey, *hours: str) -> None:
    for hour in hours:
        instance.report_runless_asset_event(AssetMaterialization(key, partition=f"2026-11-27-{hour}:00"))


def run_checks_by_hand(instance: DagsterInstance) -> dict[str, tuple[bool, str]]:
    result = materialize(
        [*FRESHNESS_CHECKS, *(AssetSpec(mart) for mart in MARTS)],
        instance=instance,
        selection=AssetSelection.checks(*FRESHNESS_CHECKS),
    )
    evaluations = result.get_asset_check_evaluations()
    assert all(e.severity == AssetCheckSeverity.WARN for e in evaluations)
    return {e.asset_key.to_user_string(): (e.passed, e.description or "") for e in evaluations}


def test_a_mart_more_than_two_hours_behind_silver_fails_its_check_and_one_within_passes() -> None:
    instance = DagsterInstance.ephemeral()
    assert run_checks_by_hand(instance) == {
        "gold/sales_performance": (
            True,
            "gold/sales_performance: silver has no materialized hour yet, so nothing can be behind it",
        ),
        "gold/items_category_performance": (
            True,
            "gold/items_category_performance: silver has no materialized hour yet, so nothing can be behind it",
        ),
    }
    materialized(instance, SOURCE, "08", "09", "10", "11")
    materialized(instance, SALES, "08")  # 3 h behind
    materialized(instance, ITEMS, "07", "09")  # 2 h behind: the limit itself is still fresh

    checks = run_checks_by_hand(instance)
    passed, reason = checks["gold/sales_performance"]
    assert not passed
    assert "up to 2026-11-27-08:00, silver up to 2026-11-27-11:00: 3 h behind, more than the 2 h limit" in reason
    assert checks["gold/items_category_performance"][0]

    materialized(instance, SALES, "11")
    assert run_checks_by_hand(instance)["gold/sales_performance"][0]


def tick(instance: DagsterInstance, settings: Settings, cursor: str | None) -> SensorResult | SkipReason:
    context = build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"aws": AwsResource(aws_endpoint_url=settings.aws_endpoint_url)},
    )
    result = mart_freshness(context)
    assert isinstance(result, SensorResult | SkipReason)
    if isinstance(result, SensorResult):
        for event in result.asset_events:  # what the sensor daemon does with them
            instance.report_runless_asset_event(event)
    return result


def latest_check(instance: DagsterInstance, mart: AssetKey) -> bool | None:
    key = AssetCheckKey(mart, CHECK_NAME)
    records = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])
    record = records.get(key)
    if record is None or record.event is None or record.event.dagster_event is None:
        return None
    return bool(record.event.dagster_event.event_specific_data.passed)  # type: ignore[union-attr]


def test_the_sensor_reports_evaluations_outside_any_run_and_alerts_once_per_turn_to_stale(
    settings: Settings, aws: AwsClients
) -> None:
    inbox = subscribe_alerts(aws, settings)
    instance = DagsterInstance.ephemeral()
    materialized(instance, SOURCE, "08", "09", "10", "11", "12")
    materialized(instance, SALES, "12")
    materialized(instance, ITEMS, "09")  # 3 h behind

    first = tick(instance, settings, None)
    assert isinstance(first, SensorResult)
    assert {(e.asset_key, e.passed) for e in first.asset_events} == {(SALES, True), (ITEMS, False)}
    assert latest_check(instance, ITEMS) is False
    assert latest_check(instance, SALES) is True
    (alert,) = alerts(aws, inbox)
    assert alert["kind"] == "freshness"
    assert alert["assets"] == ["gold/items_category_performance"]
    assert "3 h behind, more than the 2 h limit" in alert["reason"]

    # Nothing changed: nothing reported, no second alert.
    assert isinstance(tick(instance, settings, first.cursor), SkipReason)

    # Still stale, but further behind: reported again, not alerted again.
    materialized(instance, SOURCE, "13")
    second = tick(instance, settings, first.cursor)
    assert isinstance(second, SensorResult)
    assert [(e.asset_key, e.passed) for e in second.asset_events] == [(SALES, True), (ITEMS, False)]
    assert alerts(aws, inbox) == []

    # Caught up, then stale again: a new alert.
    materialized(instance, ITEMS, "13")
    third = tick(instance, settings, second.cursor)
    assert isinstance(third, SensorResult)
    assert latest_check(instance, ITEMS) is True
    materialized(instance, SOURCE, "14", "15", "16")
    fourth = tick(instance, settings, third.cursor)
    assert isinstance(fourth, SensorResult)
    both = alerts(aws, inbox)
    deadline = time.monotonic() + 10
    while len(both) < 2 and time.monotonic() < deadline:
        both += alerts(aws, inbox)
    assert sorted(a["assets"][0] for a in both) == ["gold/items_category_performance", "gold/sales_performance"]
