"""Bronze: one hour read from DynamoDB through the index, merged into its JSON-lines file, atomically;
what DynamoDB lost is kept, reported by the source_not_shrunk check and alerted."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from dagster import AssetCheckSeverity, ExecuteInProcessResult, materialize

from cart_api.settings import Settings
from cart_api.store import format_timestamp
from cart_aws.aws import AwsClients
from cart_aws.ingest_shards import with_shard
from cart_dev.seed import put_purchases, stored_purchases
from cart_lakehouse.assets.bronze import bronze_file, bronze_purchases, merge_bronze_hour
from cart_lakehouse.lake import Lake
from cart_lakehouse.partitions import Hour
from cart_lakehouse.resources import AwsResource, LakeResource
from tests.cart_lakehouse.sensors.test_alerts import alerts, subscribe_alerts


def recent_hour(hours_ago: int = 2) -> Hour:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return Hour(now - timedelta(hours=hours_ago))


def resources(settings: Settings, root: str) -> dict[str, Any]:
    return {
        "aws": AwsResource(aws_endpoint_url=settings.aws_endpoint_url, aws_region=settings.aws_region),
        "lake": LakeResource(root=root, aws_endpoint_url=settings.aws_endpoint_url, aws_region=settings.aws_region),
    }


def checks(result: ExecuteInProcessResult) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def lines(lake: Lake, hour: Hour) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lake.read_bytes(bronze_file(hour)).decode().splitlines()]


def test_bronze_holds_exactly_the_hour_and_reruns_merge_into_it(
    settings: Settings, aws: AwsClients, tmp_path: Path
) -> None:
    hour, other = recent_hour(2), recent_hour(3)
    mine = stored_purchases(hour.start, 250, seed=1)  # more than one Query page is not needed: 250 is
    put_purchases(aws, settings.purchases_table, mine + stored_purchases(other.start, 40, seed=2))

    result = materialize([bronze_purchases], partition_key=hour.key, resources=resources(settings, str(tmp_path)))
    assert result.success
    lake = Lake.open(str(tmp_path))
    rows = lines(lake, hour)
    assert sorted(r["purchase_id"] for r in rows) == sorted(p["purchase_id"] for p in mine)
    assert {r["ingest_hour"] for r in rows} == {hour.ingest_hour}
    assert rows[0] == next(p for p in mine if p["purchase_id"] == rows[0]["purchase_id"])  # as stored
    assert bronze_file(hour) == f"bronze/purchases/{hour.path}/purchases.jsonl"
    metadata = result.asset_materializations_for_node("bronze__purchases")[0].metadata
    assert metadata["dagster/row_count"].value == 250

    assert checks(result) == {"source_not_shrunk": True}

    # a rerun with nothing new rewrites the same bytes
    before = lake.read_bytes(bronze_file(hour))
    assert materialize([bronze_purchases], partition_key=hour.key, resources=resources(settings, str(tmp_path))).success
    assert lake.read_bytes(bronze_file(hour)) == before

    # a rerun after late data merges it in: no duplicates, the new purchase included
    late = stored_purchases(hour.start, 1, seed=3)
    put_purchases(aws, settings.purchases_table, late)
    result = materialize([bronze_purchases], partition_key=hour.key, resources=resources(settings, str(tmp_path)))
    rows = lines(lake, hour)
    assert len(rows) == 251
    assert len({r["purchase_id"] for r in rows}) == 251
    assert lake.files(f"bronze/purchases/{hour.path}") == [bronze_file(hour)]  # no temporary files left
    assert before != lake.read_bytes(bronze_file(hour))
    metadata = result.asset_materializations_for_node("bronze__purchases")[0].metadata
    assert (metadata["added"].value, metadata["kept_missing_from_source"].value) == (1, 0)


def delete_purchases(aws: AwsClients, table: str, purchase_ids: list[str]) -> None:
    for purchase_id in purchase_ids:
        aws.dynamodb.delete_item(TableName=table, Key={"purchase_id": {"S": purchase_id}})


def test_purchases_dynamodb_lost_stay_in_bronze_and_are_alerted(
    settings: Settings, aws: AwsClients, tmp_path: Path
) -> None:
    hour, other = recent_hour(2), recent_hour(3)
    first = stored_purchases(hour.start, 30, seed=20)
    put_purchases(aws, settings.purchases_table, first + stored_purchases(other.start, 10, seed=21))
    assert materialize(
        [bronze_purchases],
        resources=resources(settings, str(tmp_path)),
        tags={"dagster/asset_partition_range_start": other.key, "dagster/asset_partition_range_end": hour.key},
    ).success
    inbox = subscribe_alerts(aws, settings)

    # the table loses three purchases of the hour (a restarted local AWS), and two late ones arrive
    lost = sorted(p["purchase_id"] for p in first[:3])
    delete_purchases(aws, settings.purchases_table, lost)
    late = stored_purchases(hour.start, 2, seed=22)
    put_purchases(aws, settings.purchases_table, late)
    result = materialize(
        [bronze_purchases],
        resources=resources(settings, str(tmp_path)),
        tags={"dagster/asset_partition_range_start": other.key, "dagster/asset_partition_range_end": hour.key},
    )

    assert result.success  # a warning: silver and gold go on with what bronze kept
    lake = Lake.open(str(tmp_path))
    assert {r["purchase_id"] for r in lines(lake, hour)} == {p["purchase_id"] for p in first + late}
    assert len(lines(lake, other)) == 10
    (check,) = result.get_asset_check_evaluations()
    assert (check.check_name, check.passed, check.severity) == ("source_not_shrunk", False, AssetCheckSeverity.WARN)
    assert check.metadata["missing"].value == 3
    assert check.metadata["missing_per_hour"].value == {hour.key: 3}
    assert check.metadata["sample"].value == lost
    assert "published" in str(check.metadata["alert"].value)
    assert check.description is not None
    assert hour.key in check.description
    metadata = result.asset_materializations_for_node("bronze__purchases")[0].metadata
    assert (metadata["added"].value, metadata["kept_missing_from_source"].value) == (2, 3)
    assert metadata["missing_per_hour"].value == {hour.key: 3}

    (alert,) = alerts(aws, inbox)
    assert alert["kind"] == "source_shrunk"
    assert alert["partition"] == hour.key
    assert hour.key in alert["title"]
    assert alert["details"] == {"missing_per_hour": {hour.key: 3}, "sample": lost}
    assert "3 purchases" in alert["reason"]
    assert lost[0] in alert["reason"]
    assert "restore" in alert["reason"]  # what to do
    assert alert["run_url"].endswith(f"/runs/{result.run_id}")

    # rerunning again changes nothing and warns again: the purchases are still missing from the table
    before = lake.read_bytes(bronze_file(hour))
    again = materialize([bronze_purchases], partition_key=hour.key, resources=resources(settings, str(tmp_path)))
    assert lake.read_bytes(bronze_file(hour)) == before
    assert checks(again) == {"source_not_shrunk": False}


def test_the_newest_received_at_wins(settings: Settings, aws: AwsClients, tmp_path: Path) -> None:
    hour = recent_hour(2)
    (purchase,) = stored_purchases(hour.start, 1, seed=30)
    put_purchases(aws, settings.purchases_table, [purchase])

    def run() -> ExecuteInProcessResult:
        return materialize([bronze_purchases], partition_key=hour.key, resources=resources(settings, str(tmp_path)))

    assert run().success
    lake = Lake.open(str(tmp_path))
    newer = {**purchase, "received_at": format_timestamp(hour.start + timedelta(minutes=59)), "total_amount": 1.5}
    older = {**purchase, "received_at": format_timestamp(hour.start), "total_amount": 2.5}

    put_purchases(aws, settings.purchases_table, [newer])  # the same purchase, stored again later
    assert run().success
    assert lines(lake, hour) == [newer]

    put_purchases(aws, settings.purchases_table, [older])  # an older version than bronze holds
    assert run().success
    assert lines(lake, hour) == [newer]


def test_a_bronze_file_that_is_not_json_lines_stops_the_run_with_where(
    settings: Settings, aws: AwsClients, tmp_path: Path
) -> None:
    hour = recent_hour(2)
    lake = Lake.open(str(tmp_path))
    lake.write_bytes(bronze_file(hour), b'{"purchase_id": "a"}\nnot json\n')
    with pytest.raises(ValueError, match="is not JSON lines"):
        merge_bronze_hour([], lake, hour)


def test_an_empty_hour_writes_an_empty_partition(settings: Settings, tmp_path: Path) -> None:
    hour = recent_hour(5)
    result = materialize([bronze_purchases], partition_key=hour.key, resources=resources(settings, str(tmp_path)))
    assert result.success
    assert Lake.open(str(tmp_path)).read_bytes(bronze_file(hour)) == b""


def test_bronze_writes_to_s3(settings: Settings, aws: AwsClients) -> None:
    hour = recent_hour(4)
    put_purchases(aws, settings.purchases_table, stored_purchases(hour.start, 30, seed=4))
    root = f"s3://{settings.lake_bucket}/lake"
    assert materialize([bronze_purchases], partition_key=hour.key, resources=resources(settings, root)).success
    key = f"lake/{bronze_file(hour)}"
    body = aws.s3.get_object(Bucket=settings.lake_bucket, Key=key)["Body"].read().decode()
    assert len(body.splitlines()) == 30
    assert [o["Key"] for o in aws.s3.list_objects_v2(Bucket=settings.lake_bucket)["Contents"]] == [key]


def test_a_range_of_hours_runs_as_one_run(settings: Settings, aws: AwsClients, tmp_path: Path) -> None:
    hours = [recent_hour(h) for h in (8, 7, 6)]
    for i, hour in enumerate(hours):
        put_purchases(aws, settings.purchases_table, stored_purchases(hour.start, 5 + i, seed=10 + i))
    result = materialize(
        [bronze_purchases],
        resources=resources(settings, str(tmp_path)),
        tags={
            "dagster/asset_partition_range_start": hours[0].key,
            "dagster/asset_partition_range_end": hours[-1].key,
        },
    )
    assert result.success
    lake = Lake.open(str(tmp_path))
    assert [len(lines(lake, h)) for h in hours] == [5, 6, 7]


def test_hours_spread_over_shards_are_read_whole_after_the_shard_count_changed(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = recent_hour(3), recent_hour(2)
    before, after = stored_purchases(old.start, 150, seed=30), stored_purchases(new.start, 150, seed=31)
    written_with = {4: before, 8: after}  # the old hour under 4 shards, then 8 for new hours
    for shards, purchases in written_with.items():
        put_purchases(
            AwsClients(settings.model_copy(update={"ingest_shards": shards})), settings.purchases_table, purchases
        )

    monkeypatch.setenv("CART_INGEST_SHARDS", "8")  # what bronze now runs with
    lake = Lake.open(str(tmp_path))
    for hour, purchases in ((old, before), (new, after)):
        result = materialize([bronze_purchases], partition_key=hour.key, resources=resources(settings, str(tmp_path)))
        assert result.success
        rows = lines(lake, hour)
        assert sorted(r["purchase_id"] for r in rows) == sorted(p["purchase_id"] for p in purchases)
        assert all("ingest_shard" not in r for r in rows)  # a storage detail: silver would quarantine it
        metadata = result.asset_materializations_for_node("bronze__purchases")[0].metadata
        assert "8 shards per hour" in str(metadata["source"].value)


@pytest.mark.parametrize("bad", ["total_amount", "number_of_installments"])
def test_bad_items_are_kept_raw_for_silver_to_quarantine(
    settings: Settings, aws: AwsClients, tmp_path: Path, bad: str
) -> None:
    hour = recent_hour(2)
    item = stored_purchases(hour.start, 1, seed=5)[0]
    raw = {k: {"S": str(v)} for k, v in item.items()}  # everything a string: written by hand, not the worker
    raw[bad] = {"S": "lots"}
    aws.dynamodb.put_item(TableName=settings.purchases_table, Item=with_shard(raw, settings.ingest_shards))
    assert materialize([bronze_purchases], partition_key=hour.key, resources=resources(settings, str(tmp_path))).success
    assert lines(Lake.open(str(tmp_path)), hour)[0][bad] == "lots"
