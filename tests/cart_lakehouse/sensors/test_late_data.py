"""Late data: purchases DynamoDB holds that an hour's bronze lacks rerun that hour (adjacent hours as
one range run); a table that lost purchases, is empty or unreachable reruns nothing."""

import json
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

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


def evaluate(settings: Settings, root: Path, cursor: str | None) -> SensorResult | SkipReason:
    context = build_sensor_context(
        cursor=cursor, instance=DagsterInstance.ephemeral(), resources=resources(settings, root)
    )
    return late_data(context)


def tick(settings: Settings, root: Path, cursor: str | None) -> SensorResult:
    result = evaluate(settings, root, cursor)
    assert isinstance(result, SensorResult)
    return result


def materialize_bronze(settings: Settings, root: Path, *hours: Hour) -> None:
    """One bronze run over consecutive hours."""
    tags = {"dagster/asset_partition_range_start": hours[0].key, "dagster/asset_partition_range_end": hours[-1].key}
    assert materialize([bronze_purchases], tags=tags, resources=resources(settings, root)).success


def delete_purchases(aws: AwsClients, table: str, purchases: list[dict[str, Any]]) -> None:
    for p in purchases:
        aws.dynamodb.delete_item(TableName=table, Key={"purchase_id": {"S": p["purchase_id"]}})


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


def test_adjacent_late_hours_rerun_as_one_range_run(settings: Settings, aws: AwsClients, tmp_path: Path) -> None:
    hours = [Hour(NOW - timedelta(hours=h)) for h in (9, 8, 7, 6, 5)]
    for i, hour in enumerate(hours):
        put_purchases(aws, settings.purchases_table, stored_purchases(hour.start, 4, seed=60 + i))
    materialize_bronze(settings, tmp_path, *hours)
    first = tick(settings, tmp_path, None)
    assert first.run_requests == []

    # late purchases for 9, 8 and 7 hours ago (adjacent) and for 5 hours ago (alone)
    for i, hour in enumerate([hours[0], hours[1], hours[2], hours[4]]):
        put_purchases(aws, settings.purchases_table, stored_purchases(hour.start, 1 + i, seed=70 + i))
    second = tick(settings, tmp_path, first.cursor)

    ranged, single = second.run_requests
    assert ranged.partition_key is None
    assert ranged.tags["dagster/asset_partition_range_start"] == hours[0].key
    assert ranged.tags["dagster/asset_partition_range_end"] == hours[2].key
    assert ranged.tags["cart/trigger"] == "late_data"
    assert ranged.run_key == f"late:{hours[0].key}..{hours[2].key}:5,6,7"
    assert single.partition_key == hours[4].key
    assert single.run_key == f"late:{hours[4].key}:8"
    assert "dagster/asset_partition_range_start" not in single.tags

    # the range request runs the hours as one run: afterwards bronze holds everything
    materialize_bronze(settings, tmp_path, *hours[:3])
    materialize_bronze(settings, tmp_path, hours[4])
    assert tick(settings, tmp_path, second.cursor).run_requests == []
    assert tick(settings, tmp_path, None).run_requests == []  # and compared afresh, by ids


def test_an_hour_whose_dynamodb_holds_a_subset_of_bronze_is_not_rerun(
    settings: Settings, aws: AwsClients, tmp_path: Path
) -> None:
    purchases = stored_purchases(HOUR.start, 20, seed=80)
    put_purchases(aws, settings.purchases_table, purchases)
    materialize_bronze(settings, tmp_path, HOUR)
    first = tick(settings, tmp_path, None)

    delete_purchases(aws, settings.purchases_table, purchases[:3])  # the table lost three
    for cursor in (first.cursor, None):  # whether or not the sensor knew the hour before
        result = tick(settings, tmp_path, cursor)
        assert result.run_requests == []
        assert json.loads(result.cursor or "{}")[HOUR.key] == 17


def test_deleted_and_added_purchases_rerun_even_when_dynamodb_holds_fewer(
    settings: Settings, aws: AwsClients, tmp_path: Path
) -> None:
    purchases = stored_purchases(HOUR.start, 20, seed=81)
    put_purchases(aws, settings.purchases_table, purchases)
    materialize_bronze(settings, tmp_path, HOUR)
    first = tick(settings, tmp_path, None)

    delete_purchases(aws, settings.purchases_table, purchases[:3])
    put_purchases(aws, settings.purchases_table, stored_purchases(HOUR.start, 2, seed=82))  # 19 < 20, 2 new
    (run,) = tick(settings, tmp_path, first.cursor).run_requests
    assert run.partition_key == HOUR.key
    assert run.run_key == f"late:{HOUR.key}:19"


def test_an_empty_table_reruns_nothing_and_keeps_the_cursor(
    settings: Settings, aws: AwsClients, tmp_path: Path
) -> None:
    hours = [Hour(NOW - timedelta(hours=h)) for h in (4, 3)]
    purchases = [p for i, h in enumerate(hours) for p in stored_purchases(h.start, 5, seed=90 + i)]
    put_purchases(aws, settings.purchases_table, purchases)
    materialize_bronze(settings, tmp_path, *hours)
    first = tick(settings, tmp_path, None)

    delete_purchases(aws, settings.purchases_table, purchases)  # a local AWS restarted empty
    skipped = evaluate(settings, tmp_path, first.cursor)
    assert isinstance(skipped, SkipReason)
    assert "holds no purchases" in (skipped.skip_message or "")
    assert "2 materialized hours" in (skipped.skip_message or "")


def test_an_unreachable_table_reruns_nothing(settings: Settings, aws: AwsClients, tmp_path: Path) -> None:
    put_purchases(aws, settings.purchases_table, stored_purchases(HOUR.start, 5, seed=95))
    materialize_bronze(settings, tmp_path, HOUR)
    # a port bound but not listening refuses connections, and stays ours for the whole test
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{closed.getsockname()[1]}"
        context = build_sensor_context(
            instance=DagsterInstance.ephemeral(),
            resources={
                "aws": AwsResource(aws_endpoint_url=endpoint),
                "lake": LakeResource(root=str(tmp_path), aws_endpoint_url=endpoint),
            },
        )
        skipped = late_data(context)
    assert isinstance(skipped, SkipReason)
    assert "unreachable" in (skipped.skip_message or "")
    assert endpoint in (skipped.skip_message or "")
