"""Late data: new purchases for an hour whose bronze is written rerun that hour, once per new count."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dagster import DagsterInstance, SensorResult, SkipReason, build_sensor_context, materialize

from cart_api.settings import Settings
from cart_aws.aws import AwsClients
from cart_dev.seed import put_purchases, stored_purchases
from cart_lakehouse.assets.bronze import bronze_purchases
from cart_lakehouse.partitions import Hour
from cart_lakehouse.resources import AwsResource, LakeResource
from cart_lakehouse.sensors.late_data import closed_hours, late_data

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
HOUR, UNMATERIALIZED = Hour(NOW - timedelta(hours=3)), Hour(NOW - timedelta(hours=4))


def resources(settings: Settings, root: Path) -> dict[str, object]:
    return {
        "aws": AwsResource(aws_endpoint_url=settings.aws_endpoint_url),
        "lake": LakeResource(root=str(root), aws_endpoint_url=settings.aws_endpoint_url),
    }


def tick(settings: Settings, root: Path, cursor: str | None) -> SensorResult:
    context = build_sensor_context(
        cursor=cursor, instance=DagsterInstance.ephemeral(), resources=resources(settings, root)
    )
    result = late_data(context)
    assert isinstance(result, SensorResult)
    return result


def test_late_purchases_rerun_their_hour_once(settings: Settings, aws: AwsClients, tmp_path: Path) -> None:
    put_purchases(aws, settings.purchases_table, stored_purchases(HOUR.start, 20, seed=1))
    put_purchases(aws, settings.purchases_table, stored_purchases(UNMATERIALIZED.start, 5, seed=2))
    assert materialize([bronze_purchases], partition_key=HOUR.key, resources=resources(settings, tmp_path)).success

    first = tick(settings, tmp_path, None)
    assert first.run_requests == []
    assert isinstance(first.skip_reason, SkipReason)
    assert json.loads(first.cursor or "{}")[HOUR.key] == 20
    assert UNMATERIALIZED.key not in json.loads(first.cursor or "{}")  # the schedule's job, not late data

    put_purchases(aws, settings.purchases_table, stored_purchases(HOUR.start, 2, seed=3))  # late
    second = tick(settings, tmp_path, first.cursor)
    (run,) = second.run_requests
    assert run.partition_key == HOUR.key
    assert run.run_key == f"late:{HOUR.key}:22"

    third = tick(settings, tmp_path, second.cursor)
    assert third.run_requests == []


def test_only_closed_hours_after_the_first_partition_are_watched() -> None:
    now = datetime(2026, 11, 25, 10, 30, tzinfo=UTC)
    hours = closed_hours(now, 48, "2026-11-25-07:00")
    assert [h.key for h in hours] == ["2026-11-25-07:00", "2026-11-25-08:00", "2026-11-25-09:00"]
