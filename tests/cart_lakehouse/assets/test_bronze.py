"""Bronze: one hour read from DynamoDB through the index, written as JSON lines, atomically."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from dagster import materialize

from cart_api.settings import Settings
from cart_aws.aws import AwsClients
from cart_dev.seed import put_purchases, stored_purchases
from cart_lakehouse.assets.bronze import bronze_file, bronze_purchases
from cart_lakehouse.lake import Lake
from cart_lakehouse.partitions import Hour
from cart_lakehouse.resources import AwsResource, LakeResource


def recent_hour(hours_ago: int = 2) -> Hour:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return Hour(now - timedelta(hours=hours_ago))


def resources(settings: Settings, root: str) -> dict[str, Any]:
    return {
        "aws": AwsResource(aws_endpoint_url=settings.aws_endpoint_url, aws_region=settings.aws_region),
        "lake": LakeResource(root=root, aws_endpoint_url=settings.aws_endpoint_url, aws_region=settings.aws_region),
    }


def lines(lake: Lake, hour: Hour) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lake.read_bytes(bronze_file(hour)).decode().splitlines()]


def test_bronze_holds_exactly_the_hour_and_reruns_replace_it(
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

    # a rerun after late data replaces the file: no duplicates, the new purchase included
    late = stored_purchases(hour.start, 1, seed=3)
    put_purchases(aws, settings.purchases_table, late)
    before = lake.read_bytes(bronze_file(hour))
    assert materialize([bronze_purchases], partition_key=hour.key, resources=resources(settings, str(tmp_path))).success
    rows = lines(lake, hour)
    assert len(rows) == 251
    assert len({r["purchase_id"] for r in rows}) == 251
    assert lake.files(f"bronze/purchases/{hour.path}") == [bronze_file(hour)]  # no temporary files left
    assert before != lake.read_bytes(bronze_file(hour))


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


@pytest.mark.parametrize("bad", ["total_amount", "number_of_installments"])
def test_bad_items_are_kept_raw_for_silver_to_quarantine(
    settings: Settings, aws: AwsClients, tmp_path: Path, bad: str
) -> None:
    hour = recent_hour(2)
    item = stored_purchases(hour.start, 1, seed=5)[0]
    raw = {k: {"S": str(v)} for k, v in item.items()}  # everything a string: written by hand, not the worker
    raw[bad] = {"S": "lots"}
    aws.dynamodb.put_item(TableName=settings.purchases_table, Item=raw)
    assert materialize([bronze_purchases], partition_key=hour.key, resources=resources(settings, str(tmp_path))).success
    assert lines(Lake.open(str(tmp_path)), hour)[0][bad] == "lots"
