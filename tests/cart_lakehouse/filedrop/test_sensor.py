"""The ``landing_files`` sensor against the moto server: files put into the lake bucket with boto3, so
S3 itself sends the events to the landing queue, and ticks as the Dagster daemon runs them (with a
clock of the test's own instead of waiting)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as arrow
import pytest
from dagster import DagsterInstance, DefaultSensorStatus, SensorResult, build_sensor_context

from cart_api.settings import Settings
from cart_aws.aws import AwsClients
from cart_lakehouse.filedrop.layout import set_record, silver_dir
from cart_lakehouse.filedrop.manifest import GONE, IN_SET, PENDING, Manifest
from cart_lakehouse.filedrop.partitions import FILEDROP_JOB, filedrop_sets
from cart_lakehouse.filedrop.sensor import FORCE_RUN_CONFIG, landing_files, landing_files_sensor
from cart_lakehouse.filedrop.store import write_parquet
from cart_lakehouse.lake import Lake
from cart_lakehouse.resources import AwsResource, LakeResource
from contracts import load_contract
from tests.cart_lakehouse.sensors.test_alerts import alerts, subscribe_alerts
from tests.conftest import receive_all

SETTLED = 10.0  # seconds after the drop: past the sensor's settle time


def csv_file(table: str, rows: list[dict[str, str]]) -> bytes:
    """A CSV of the contract's columns, in its order, with ``rows`` (missing values empty)."""
    header = [c.name for c in load_contract("filedrop").columns(table)]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=header, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def orders(*ids: str) -> bytes:
    return csv_file(
        "orders",
        [{"order_id": i, "user_id": "u1", "status": "shipped", "created_at": "2026-11-20T10:00:00Z"} for i in ids],
    )


def products(*ids: str) -> bytes:
    return csv_file("products", [{"id": i, "sku": f"sku-{i}", "name": "Mug", "brand": "Acme"} for i in ids])


def items(*pairs: tuple[str, str]) -> bytes:
    return csv_file(
        "order_items",
        [
            {"id": str(n), "order_id": o, "user_id": "u1", "product_id": p, "status": "shipped", "sale_price": "9.5"}
            for n, (o, p) in enumerate(pairs)
        ],
    )


def drop(aws: AwsClients, settings: Settings, key: str, body: bytes) -> str:
    return aws.s3.put_object(Bucket=settings.lake_bucket, Key=key, Body=body)["ETag"].strip('"')


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as instance:
        yield instance


def tick(
    settings: Settings, root: Path, after: float = SETTLED, instance: DagsterInstance | None = None
) -> SensorResult:
    """One evaluation, its clock ``after`` seconds from now; a new context (and by default a new
    Dagster instance) each time, as after a restart: all state is in the lake."""
    endpoint, region = settings.aws_endpoint_url, settings.aws_region
    context = build_sensor_context(
        instance=instance or DagsterInstance.ephemeral(),
        resources={
            "aws": AwsResource(aws_endpoint_url=endpoint, aws_region=region),
            "lake": LakeResource(root=str(root), aws_endpoint_url=endpoint, aws_region=region),
        },
    )
    result = landing_files_sensor(lambda: datetime.now(UTC) + timedelta(seconds=after))(context)
    assert isinstance(result, SensorResult)
    return result


def daemon_applies(instance: DagsterInstance, result: SensorResult) -> None:
    """What the daemon does with a result's partitions (runs are not launched here)."""
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys or []))


def new_partitions(result: SensorResult) -> list[str]:
    requests = result.dynamic_partitions_requests or []
    assert all(r.partitions_def_name == filedrop_sets.name for r in requests)
    return [key for r in requests for key in r.partition_keys or []]


def skipped(result: SensorResult) -> str:
    assert result.skip_reason is not None, result
    assert not result.run_requests
    return result.skip_reason.skip_message or ""


def record_of(root: Path, set_id: str) -> dict[str, Any]:
    return dict(json.loads(Lake.open(str(root)).read_bytes(set_record(set_id))))


def manifest(root: Path) -> dict[str, tuple[str, str | None]]:
    return {f.key: (f.state, f.set_id) for f in Manifest.load(Lake.open(str(root))).files}


def test_the_sensor_is_defined_for_the_file_drop_job() -> None:
    assert landing_files.name == "landing_files"
    assert landing_files.job_name == FILEDROP_JOB
    assert landing_files.default_status == DefaultSensorStatus.RUNNING
    assert landing_files.minimum_interval_seconds == 15


def test_a_complete_drop_is_launched_as_one_set(
    settings: Settings, aws: AwsClients, tmp_path: Path, instance: DagsterInstance
) -> None:
    etags = {
        "landing/orders/orders 1.csv": drop(aws, settings, "landing/orders/orders 1.csv", orders("o1", "o2")),
        "landing/products/products.csv": drop(aws, settings, "landing/products/products.csv", products("P0001")),
        "landing/order_items/items.csv": drop(
            aws, settings, "landing/order_items/items.csv", items(("o1", "P0001"), ("o2", "P0001"))
        ),
    }
    # at once: recorded, the events deleted, but the drop may still be landing
    held = skipped(tick(settings, tmp_path, after=0, instance=instance))
    assert "3 files landed; 3 pending; the last file landed" in held
    assert aws.queue_depth(settings.landing_queue) == 0
    assert set(manifest(tmp_path).values()) == {(PENDING, None)}

    result = tick(settings, tmp_path, instance=instance)
    (set_id,) = new_partitions(result)
    (run,) = result.run_requests or []
    assert (run.partition_key, run.run_key) == (set_id, set_id)
    assert run.tags["cart/trigger"] == "landing_files"
    assert run.tags["cart/filedrop_set"] == set_id
    assert run.tags["cart/filedrop_files"] == "3"
    record = record_of(tmp_path, set_id)
    assert record["complete"] is True
    assert record["set_id"] == set_id
    assert {f["key"]: f["etag"] for f in record["files"]} == etags
    assert {f["table"] for f in record["files"]} == {"orders", "products", "order_items"}
    assert set(manifest(tmp_path).values()) == {(IN_SET, set_id)}
    assert json.loads(result.cursor or "{}") == {"last_set": set_id, "pending": 0, "unconfirmed": 1, "waiting": 0}

    daemon_applies(instance, result)
    assert skipped(tick(settings, tmp_path, instance=instance)) == "no files landed; nothing pending"


def test_orders_and_products_first_then_items_as_a_second_set(
    settings: Settings, aws: AwsClients, tmp_path: Path, instance: DagsterInstance
) -> None:
    drop(aws, settings, "landing/orders/o.csv", orders("o1", "o2"))
    drop(aws, settings, "landing/products/p.csv", products("P0001", "P0002"))
    result = tick(settings, tmp_path, instance=instance)
    (first,) = new_partitions(result)
    daemon_applies(instance, result)
    assert {f["table"] for f in record_of(tmp_path, first)["files"]} == {"orders", "products"}
    # its run loads them into silver (what the file-drop job writes)
    lake = Lake.open(str(tmp_path))
    write_parquet(lake, f"{silver_dir('orders', first)}/data.parquet", arrow.table({"order_id": ["o1", "o2"]}))
    write_parquet(lake, f"{silver_dir('products', first)}/data.parquet", arrow.table({"id": ["P0001", "P0002"]}))

    drop(aws, settings, "landing/order_items/late.csv", items(("o1", "P0002"), ("o2", "P0001")))
    result = tick(settings, tmp_path, after=SETTLED + 15, instance=instance)  # the next tick
    (second,) = new_partitions(result)
    assert second > first  # set ids sort by time
    assert [r.partition_key for r in result.run_requests or []] == [second]
    record = record_of(tmp_path, second)
    assert [f["key"] for f in record["files"]] == ["landing/order_items/late.csv"]
    assert record["complete"] is True
    assert record["missing_ids"] == {"orders.order_id": 0, "products.id": 0}


def test_items_waiting_for_their_orders_are_reported_after_the_wait(
    settings: Settings, aws: AwsClients, tmp_path: Path, instance: DagsterInstance
) -> None:
    inbox = subscribe_alerts(aws, settings)
    drop(aws, settings, "landing/products/p.csv", products("P0001"))
    drop(aws, settings, "landing/order_items/i.csv", items(("o7", "P0001"), ("o8", "P0001"), ("o8", "P0009")))
    result = tick(settings, tmp_path, instance=instance)
    (products_set,) = new_partitions(result)  # the products go ahead
    assert [f["table"] for f in record_of(tmp_path, products_set)["files"]] == ["products"]
    daemon_applies(instance, result)
    lake = Lake.open(str(tmp_path))  # and their run loads them
    write_parquet(lake, f"{silver_dir('products', products_set)}/data.parquet", arrow.table({"id": ["P0001"]}))

    wait = settings.model_dump().get("filedrop_set_wait_seconds", 900.0)
    waiting = skipped(tick(settings, tmp_path, after=wait - 60, instance=instance))
    assert "landing/order_items/i.csv waits for 2 orders.order_id (o7, o8) and 1 products.id (P0009)" in waiting
    assert "reported as incomplete at" in waiting
    assert alerts(aws, inbox) == []

    result = tick(settings, tmp_path, after=wait + 1, instance=instance)
    (incomplete,) = new_partitions(result)  # visible in the UI ...
    assert result.run_requests == []  # ... and not launched
    record = record_of(tmp_path, incomplete)
    assert record["complete"] is False
    assert record["missing_ids"] == {"orders.order_id": 2, "products.id": 1}
    assert manifest(tmp_path)["landing/order_items/i.csv"] == (IN_SET, incomplete)
    (alert,) = alerts(aws, inbox)
    assert alert["kind"] == "filedrop_set_incomplete"
    assert alert["partition"] == incomplete
    assert "2 orders.order_id, 1 products.id" in alert["reason"]
    assert f"launch partition {incomplete} of filedrop_job" in alert["reason"]
    # files dropped later do not complete this set: it says so, and what to do in which order
    assert "it will not start on its own" in alert["reason"]
    assert "drop them first and let them load" in alert["reason"]
    assert (
        alert["details"]["run_config_to_force"]
        == FORCE_RUN_CONFIG
        == {"ops": {"filedrop__bronze": {"config": {"force": True}}}}
    )
    assert alert["details"]["waiting"] == [
        "landing/order_items/i.csv waits for 2 orders.order_id (o7, o8) and 1 products.id (P0009)"
    ]
    daemon_applies(instance, result)
    assert skipped(tick(settings, tmp_path, after=wait + 20, instance=instance)) == "no files landed; nothing pending"


def test_unreadable_files_form_sets_of_their_own_at_once(
    settings: Settings, aws: AwsClients, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CART_FILEDROP_MAX_FILE_BYTES", "300")
    drop(aws, settings, "landing/orders/o.csv", orders("o1"))
    bad = {
        "landing/orders/photo.csv": bytes(range(256)) * 2,  # not a CSV (and over the limit)
        "landing/products/p.csv": b"id;sku;name;brand\nP0001;s;n;b\n",  # wrong delimiter: no id column
        "landing/customers/c.csv": b"id\n1\n",  # no such table
        "landing/order_items/big.csv": items(*[(f"o{n}", "P0001") for n in range(10)]),
    }
    for key, body in bad.items():
        drop(aws, settings, key, body)
    result = tick(settings, tmp_path, after=0)  # the orders are held (settling); the bad files go at once
    runs = {str(r.partition_key): r for r in result.run_requests or []}
    assert sorted(runs) == sorted(new_partitions(result))
    reasons = {}
    for set_id in runs:
        record = record_of(tmp_path, set_id)
        (file,) = record["files"]
        assert record["complete"] is True
        assert record["kind"] == "unreadable"
        reasons[file["key"]] = record["reason"]
    assert set(reasons) == set(bad)
    assert "over the limit of 300 (CART_FILEDROP_MAX_FILE_BYTES)" in reasons["landing/orders/photo.csv"]
    assert "over the limit" in reasons["landing/order_items/big.csv"]
    assert "Column 'id' in include_columns does not exist" in reasons["landing/products/p.csv"]
    assert "unknown file name" in reasons["landing/customers/c.csv"]
    assert manifest(tmp_path)["landing/orders/o.csv"] == (PENDING, None)


def test_a_duplicate_event_and_an_event_for_a_deleted_file(settings: Settings, aws: AwsClients, tmp_path: Path) -> None:
    drop(aws, settings, "landing/orders/o.csv", orders("o1"))
    drop(aws, settings, "landing/products/gone.csv", products("P0001"))
    aws.s3.delete_object(Bucket=settings.lake_bucket, Key="landing/products/gone.csv")
    # S3 delivers at least once: every event of the queue arrives twice
    url = aws.queue_url(settings.landing_queue)
    for message in receive_all(aws, settings.landing_queue):
        aws.sqs.send_message(QueueUrl=url, MessageBody=message["Body"])
        aws.sqs.send_message(QueueUrl=url, MessageBody=message["Body"])
        aws.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    held = skipped(tick(settings, tmp_path, after=0))
    assert held.startswith("1 file landed; 1 pending")
    files = Manifest.load(Lake.open(str(tmp_path))).files
    assert [(f.key, f.state) for f in files] == [("landing/orders/o.csv", PENDING), ("landing/products/gone.csv", GONE)]
    assert "HeadObject: 404" in files[1].note
    (set_id,) = new_partitions(tick(settings, tmp_path))
    assert [f["key"] for f in record_of(tmp_path, set_id)["files"]] == ["landing/orders/o.csv"]
    assert manifest(tmp_path)["landing/products/gone.csv"] == (GONE, None)  # never in a set


def test_a_new_upload_of_a_key_is_a_new_file(
    settings: Settings, aws: AwsClients, tmp_path: Path, instance: DagsterInstance
) -> None:
    drop(aws, settings, "landing/orders/o.csv", orders("o1"))
    result = tick(settings, tmp_path, instance=instance)
    (first,) = new_partitions(result)
    daemon_applies(instance, result)
    new_etag = drop(aws, settings, "landing/orders/o.csv", orders("o1", "o2"))
    (second,) = new_partitions(tick(settings, tmp_path, after=SETTLED + 15, instance=instance))
    assert second != first
    assert record_of(tmp_path, second)["files"][0]["etag"] == new_etag
    assert [(f.state, f.set_id) for f in Manifest.load(Lake.open(str(tmp_path))).files] == [
        (IN_SET, first),
        (IN_SET, second),
    ]


def test_the_manifest_survives_a_restart(settings: Settings, aws: AwsClients, tmp_path: Path) -> None:
    drop(aws, settings, "landing/order_items/i.csv", items(("o1", "P0001")))
    assert "waits for 1 orders.order_id (o1) and 1 products.id (P0001)" in skipped(tick(settings, tmp_path))
    assert aws.queue_depth(settings.landing_queue) == 0  # only the manifest knows the items file now

    # a new sensor context and Dagster instance (a restarted daemon) over the same lake
    drop(aws, settings, "landing/orders/o.csv", orders("o1"))
    drop(aws, settings, "landing/products/p.csv", products("P0001"))
    (set_id,) = new_partitions(tick(settings, tmp_path))
    assert sorted(f["key"] for f in record_of(tmp_path, set_id)["files"]) == [
        "landing/order_items/i.csv",
        "landing/orders/o.csv",
        "landing/products/p.csv",
    ]


def test_a_set_whose_tick_result_was_lost_is_requested_again(
    settings: Settings, aws: AwsClients, tmp_path: Path, instance: DagsterInstance
) -> None:
    drop(aws, settings, "landing/orders/o.csv", orders("o1"))
    first = tick(settings, tmp_path, instance=instance)
    (set_id,) = new_partitions(first)
    # the daemon never applied the result: the next tick asks again, with the same run key
    again = tick(settings, tmp_path, instance=instance)
    assert new_partitions(again) == [set_id]
    assert [(r.partition_key, r.run_key) for r in again.run_requests or []] == [(set_id, set_id)]
    daemon_applies(instance, again)
    assert skipped(tick(settings, tmp_path, instance=instance)) == "no files landed; nothing pending"
    assert Manifest.load(Lake.open(str(tmp_path))).unconfirmed == []


def test_a_message_that_is_not_an_s3_event_is_left_for_the_dlq(
    settings: Settings, aws: AwsClients, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    aws.sqs.send_message(QueueUrl=aws.queue_url(settings.landing_queue), MessageBody="not an event")
    assert skipped(tick(settings, tmp_path)) == "no files landed; nothing pending"
    assert aws.queue_depth(settings.landing_queue) == 1  # in flight, not deleted
    (warning,) = [line for line in capfd.readouterr().err.splitlines() if "is not an S3 event" in line]
    assert "WARNING" in warning
    assert f"(receive 1): after {settings.max_receive_count} receives SQS moves it to {settings.landing_dlq}" in warning
