"""The file drop end to end on the local AWS: files put into the lake bucket, S3's events read by
the landing sensor, the set's run (validation, bronze, silver, KPIs into Delta and DynamoDB,
the checks, the archive), the notifications; a re-drop, a late file, and faulty sets; the star
schema's product dimension keeping each price a later set changes as a version of its own."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pyarrow.csv as arrow_csv
import pyarrow.parquet as pq
import pytest
from dagster import (
    AssetKey,
    AssetSelection,
    DagsterInstance,
    ExecuteInProcessResult,
    SensorResult,
    build_sensor_context,
    materialize,
)

from cart_api.settings import Settings
from cart_aws.aws import AwsClients
from cart_lakehouse.checks.schemas import arrow_schema
from cart_lakehouse.filedrop import assets as filedrop
from cart_lakehouse.filedrop.checks import FILEDROP_GATES
from cart_lakehouse.filedrop.kpis import read_items, read_kpis
from cart_lakehouse.filedrop.landing import Landing
from cart_lakehouse.filedrop.layout import quarantine_key, quarantine_report_key, silver_dir
from cart_lakehouse.filedrop.manifest import set_formed_at
from cart_lakehouse.filedrop.partitions import FORCE_RUN_CONFIG
from cart_lakehouse.filedrop.sample import FAULTS, generate_set, late_items
from cart_lakehouse.filedrop.sensor import landing_files_sensor
from cart_lakehouse.lake import Lake
from cart_lakehouse.layout import GOLD_TABLES
from cart_lakehouse.local import local_resources
from cart_lakehouse.partitions import Hour
from cart_lakehouse.resources import AwsResource, LakeResource
from tests.conftest import receive_all

pytestmark = pytest.mark.e2e  # the file drop end to end, set by set: `make test-quick` leaves it out

ASSETS = [filedrop.filedrop_bronze, filedrop.filedrop_silver, filedrop.filedrop_kpis, filedrop.filedrop_archive]
SOLD = {"pending", "processing", "shipped", "delivered"}
CENT = Decimal("0.01")


@pytest.fixture
def env(
    settings: Settings, aws: AwsClients, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Any]]:
    # the assets read their settings (bucket, topic, KPI table names) from the environment, like dagster dev
    monkeypatch.setenv("CART_AWS_ENDPOINT_URL", settings.aws_endpoint_url or "")
    monkeypatch.setenv("CART_LAKE_ROOT", str(tmp_path / "lake"))
    from cart_lakehouse.settings import lake_settings

    lake_settings.cache_clear()
    aws.sqs.create_queue(QueueName="filedrop-notices")
    aws.sns.subscribe(
        TopicArn=aws.topic_arn(settings.filedrop_topic),
        Protocol="sqs",
        Endpoint=aws.queue_arn("filedrop-notices"),
        Attributes={"RawMessageDelivery": "true"},
    )
    with DagsterInstance.ephemeral() as instance:
        yield {"instance": instance, "root": tmp_path / "lake", "lake": Lake.open(str(tmp_path / "lake"))}
    lake_settings.cache_clear()


def resources(settings: Settings, root: Path) -> dict[str, Any]:
    endpoint = settings.aws_endpoint_url
    return {
        "aws": AwsResource(aws_endpoint_url=endpoint, aws_region=settings.aws_region),
        "lake": LakeResource(root=str(root), aws_endpoint_url=endpoint, aws_region=settings.aws_region),
    }


def drop(aws: AwsClients, settings: Settings, files: dict[str, bytes]) -> None:
    for key, body in files.items():
        aws.s3.put_object(Bucket=settings.lake_bucket, Key=key, Body=body)


def sets_launched(settings: Settings, env: dict[str, Any]) -> list[str]:
    """One tick of the landing sensor once the drop has settled; the daemon's part applied."""
    context = build_sensor_context(instance=env["instance"], resources=resources(settings, env["root"]))
    result = landing_files_sensor(lambda: datetime.now(UTC) + timedelta(minutes=1))(context)
    assert isinstance(result, SensorResult)
    for request in result.dynamic_partitions_requests or []:
        env["instance"].add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys or []))
    return [str(r.partition_key) for r in result.run_requests or []]


def run_set(
    settings: Settings, env: dict[str, Any], set_id: str, force: bool = False, selection: AssetSelection | None = None
) -> ExecuteInProcessResult:
    config = FORCE_RUN_CONFIG if force else None  # what the alert and the failure tell people to use
    return materialize(
        [*ASSETS, *FILEDROP_GATES],
        selection=selection,
        partition_key=set_id,
        instance=env["instance"],
        resources=resources(settings, env["root"]),
        run_config=config,
        raise_on_error=False,
    )


def keys(aws: AwsClients, settings: Settings, prefix: str) -> list[str]:
    pages = aws.s3.get_paginator("list_objects_v2").paginate(Bucket=settings.lake_bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def notices(aws: AwsClients) -> list[dict[str, Any]]:
    return [json.loads(m["Body"]) for m in receive_all(aws, "filedrop-notices")]


def expected_order_kpis(files: dict[str, bytes]) -> dict[str, dict[str, Any]]:
    """The order KPIs computed here, in plain Python, from the CSV files themselves."""
    tables = {k.split("/")[1]: arrow_csv.read_csv(io.BytesIO(v)).to_pylist() for k, v in files.items()}
    orders = {str(o["order_id"]): o for o in tables["orders"]}
    out: dict[str, dict[str, Any]] = {}
    for o in orders.values():
        day = str(o["created_at"])[:10]
        row = out.setdefault(
            day, {"orders": set(), "customers": set(), "returned": 0, "revenue": Decimal(0), "sold": 0}
        )
        row["orders"].add(str(o["order_id"]))
        row["customers"].add(str(o["user_id"]))
        row["returned"] += o["status"] == "returned"
    for item in tables["order_items"]:
        day = str(orders[str(item["order_id"])]["created_at"])[:10]
        if item["status"] in SOLD:
            out[day]["revenue"] += Decimal(str(item["sale_price"]))
            out[day]["sold"] += 1
    return {
        day: {
            "total_orders": len(r["orders"]),
            "total_revenue": float(r["revenue"].quantize(CENT, ROUND_HALF_UP)),
            "total_items_sold": r["sold"],
            "return_rate": r["returned"] / len(r["orders"]),
            "unique_customers": len(r["customers"]),
        }
        for day, r in out.items()
    }


def test_a_dropped_set_reaches_both_kpi_tables_is_archived_and_announced(
    settings: Settings, aws: AwsClients, env: dict[str, Any]
) -> None:
    files = generate_set(seed=3, orders=120, days=2, name="first")
    drop(aws, settings, files)

    [set_id] = sets_launched(settings, env)
    result = run_set(settings, env, set_id)

    assert result.success
    checks = list(result.get_asset_check_evaluations())
    assert len(checks) == 8  # 3 silver contracts, 2 KPI contracts, 2 DynamoDB = Delta, 1 revenue
    assert [c.check_name for c in checks if not c.passed] == []
    delta = {str(r["order_date"]): r for r in read_kpis(env["lake"], "order_kpis").to_pylist()}
    for day, want in expected_order_kpis(files).items():
        got = delta[day]
        assert {k: got[k] for k in want if k != "return_rate"} == {k: v for k, v in want.items() if k != "return_rate"}
        assert got["return_rate"] == pytest.approx(want["return_rate"])
        assert got["updated_by_set"] == set_id
    items = {i["order_date"]: i for i in read_items(aws, settings.order_kpis_table)}
    assert set(items) == set(delta)
    assert float(items[min(delta)]["total_revenue"]) == delta[min(delta)]["total_revenue"]
    assert read_items(aws, settings.category_kpis_table)
    assert keys(aws, settings, "landing/") == []
    archived = keys(aws, settings, "archive/")
    assert len(archived) == 3
    assert all(f"/{set_id}/" in k for k in archived)
    [notice] = notices(aws)
    assert notice["status"] == "loaded"
    assert notice["set_id"] == set_id
    assert sorted(notice["files"]) == sorted(files)
    assert set(notice["details"]["order_dates"]) == set(delta)


def repriced(files: dict[str, bytes], product_id: str, price: str) -> dict[str, bytes]:
    """The set's products file with one product's retail price changed (the shop's new price list)."""
    key = next(k for k in files if k.startswith("landing/products/"))
    header, *rows = files[key].decode().splitlines()
    column = header.split(",").index("retail_price")
    lines = [header]
    for row in rows:
        cells = next(csv.reader([row]))
        if cells[0] == product_id:
            cells[column] = price
            out = io.StringIO()
            csv.writer(out, lineterminator="").writerow(cells)
            row = out.getvalue()
        lines.append(row)
    changed = "\n".join(lines).encode() + b"\n"
    assert changed != files[key]
    return {key.replace(".csv", "-repriced.csv"): changed}


def dim_product(settings: Settings, env: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, bool]]:
    """star/dim_product as the gold run builds it (dbt alone, no Spark), and its checks."""
    from cart_lakehouse.definitions import ASSETS, CHECKS

    hour = Hour(datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2))
    result = materialize(
        [*ASSETS, *CHECKS],
        selection=AssetSelection.assets(AssetKey(["star", "dim_product"])),
        partition_key=hour.key,
        instance=env["instance"],
        resources=local_resources(settings, str(env["root"])),
    )
    rows = pq.read_table(env["lake"].path(GOLD_TABLES["dim_product"].file(hour))).to_pylist()
    return rows, {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def test_a_redrop_changes_nothing_and_a_late_file_changes_exactly_its_date(
    settings: Settings, aws: AwsClients, env: dict[str, Any]
) -> None:
    files = generate_set(seed=5, orders=90, days=3, name="base")
    drop(aws, settings, files)
    [first] = sets_launched(settings, env)
    assert run_set(settings, env, first).success
    before = {n: read_kpis(env["lake"], n) for n in ("order_kpis", "category_kpis")}
    items_before = {t: read_items(aws, t) for t in (settings.order_kpis_table, settings.category_kpis_table)}

    drop(aws, settings, files)  # the very same files again
    [again] = sets_launched(settings, env)
    assert again != first
    redrop = run_set(settings, env, again)
    assert redrop.success
    bronze = redrop.asset_materializations_for_node("filedrop__bronze")[0].metadata
    assert bronze["redrop_of"].value == first  # recognised: the same bytes as the latest loaded set
    assert keys(aws, settings, "landing/") == []  # archived all the same
    for name, table in before.items():
        assert read_kpis(env["lake"], name).equals(table), name
    for table, items in items_before.items():
        assert read_items(aws, table) == items, table

    late = late_items(seed=5, orders=90, days=3, name="late", day=1)
    late |= repriced(files, "P0001", "123.45")  # and a new price list: P0001's price changes
    drop(aws, settings, late)
    [third] = sets_launched(settings, env)
    assert run_set(settings, env, third).success
    after = {str(r["order_date"]): r for r in read_kpis(env["lake"], "order_kpis").to_pylist()}
    old = {str(r["order_date"]): r for r in before["order_kpis"].to_pylist()}
    changed = sorted(day for day in old if after[day] != old[day])
    late_day = (date(2026, 11, 1) + timedelta(days=1)).isoformat()
    assert changed == [late_day]
    assert after[late_day]["updated_by_set"] == third
    assert after[late_day]["total_revenue"] < old[late_day]["total_revenue"]  # returned items are no revenue

    # the base files once more: no longer the latest load, so they are loaded in full and their
    # rows win again, bringing the late date back to what it was
    drop(aws, settings, files)
    [fourth] = sets_launched(settings, env)
    reloaded = run_set(settings, env, fourth)
    assert reloaded.success
    assert "redrop_of" not in reloaded.asset_materializations_for_node("filedrop__bronze")[0].metadata
    back = {str(r["order_date"]): r for r in read_kpis(env["lake"], "order_kpis").to_pylist()}
    assert {d: {k: v for k, v in r.items() if k != "updated_by_set"} for d, r in back.items()} == {
        d: {k: v for k, v in r.items() if k != "updated_by_set"} for d, r in old.items()
    }

    # the star's product dimension (SCD2): P0001's price changed with the third set and back with the
    # fourth, so it has three versions, each valid from the time its set was formed to the next one's;
    # the first set repeated the seed's values and opened none; a product no set changed has one
    versions, checks = dim_product(settings, env)
    p0001 = sorted((v for v in versions if v["product_id"] == "P0001"), key=lambda v: v["valid_from"])
    assert [(v["source"], str(v["retail_price"]), v["is_current"]) for v in p0001] == [
        ("seed", str(p0001[0]["retail_price"]), False),
        (third, "123.45", False),
        (fourth, str(p0001[0]["retail_price"]), True),
    ]
    assert p0001[0]["valid_from"] == datetime(1970, 1, 1, tzinfo=UTC)
    assert [v["valid_to"] for v in p0001] == [p0001[1]["valid_from"], p0001[2]["valid_from"], None]
    assert p0001[1]["valid_from"] == set_formed_at(third)
    assert [v["source"] for v in versions if v["product_id"] == "P0002"] == ["seed"]
    assert checks == dict.fromkeys(checks, True)
    assert {"current_matches_reference", "dim_product__scd2__valid"} <= set(checks)


def test_set_ids_of_an_older_lake_to_the_second_keep_their_versions_in_dim_product(
    settings: Settings, aws: AwsClients, env: dict[str, Any]
) -> None:
    # lakes written before set ids carried microseconds hold ids to the second: dim_product reads
    # both forms, each version valid from its set's time, in the order of the ids
    files = generate_set(seed=18, orders=20, days=1, name="older")
    drop(aws, settings, repriced(files, "P0001", "123.45"))
    [first] = sets_launched(settings, env)
    assert run_set(settings, env, first).success
    older = "20261101T000000Z-aaaaaaaa"
    (env["root"] / silver_dir("products", first)).rename(env["root"] / silver_dir("products", older))

    drop(aws, settings, repriced(files, "P0001", "99.99"))
    [second] = sets_launched(settings, env)
    assert run_set(settings, env, second).success

    versions, _ = dim_product(settings, env)
    p0001 = sorted((v for v in versions if v["product_id"] == "P0001"), key=lambda v: v["valid_from"])
    assert [(v["source"], str(v["retail_price"]), v["valid_from"], v["is_current"]) for v in p0001[1:]] == [
        (older, "123.45", datetime(2026, 11, 1, tzinfo=UTC), False),
        (second, "99.99", set_formed_at(second), True),
    ]
    assert p0001[0]["source"] == "seed"


@pytest.mark.parametrize(
    "rule", ["encoding", "header only", "orders.status: enum", "order_items.(order_id, product_id): unique"]
)
def test_a_faulty_set_is_quarantined_with_its_rule_and_announced(
    settings: Settings, aws: AwsClients, env: dict[str, Any], rule: str
) -> None:
    assert rule in FAULTS, sorted(FAULTS)
    files = FAULTS[rule](generate_set(seed=9, orders=40, days=1, name="bad"))
    drop(aws, settings, files)

    launched = sets_launched(settings, env)
    results = {set_id: run_set(settings, env, set_id) for set_id in launched}

    # the set holding the broken file fails; a file that cannot be read at all (header only, an
    # unknown name, ...) is a set of its own, so the rest of the drop may load without it
    rejected = [s for s, r in results.items() if not r.success]
    assert len(rejected) == 1, launched
    [set_id] = rejected
    assert keys(aws, settings, "landing/") == []  # every file archived or quarantined, none left behind
    quarantined = {k.removeprefix(f"quarantine/landing/{set_id}/") for k in keys(aws, settings, "quarantine/landing/")}
    archived = {k.split("/", 3)[3] for k in keys(aws, settings, "archive/")}
    assert quarantined - {"report.json"} | archived == {k.removeprefix("landing/") for k in files}
    assert "report.json" in quarantined
    report = json.loads(
        aws.s3.get_object(Bucket=settings.lake_bucket, Key=quarantine_report_key(set_id))["Body"].read()
    )
    assert rule in {f["rule"] for f in report["failures"]}
    [notice] = [n for n in notices(aws) if n["status"] == "rejected"]
    assert notice["set_id"] == set_id
    assert rule in notice["details"]["rules"]
    assert (
        results[set_id]
        .get_step_failure_events()[0]
        .step_failure_data.user_failure_data.description.startswith(f"set {set_id} rejected: ")
    )
    if len(launched) == 1:
        assert read_kpis(env["lake"], "order_kpis").num_rows == 0  # nothing of a rejected set is loaded


def test_an_incomplete_set_waits_is_reported_and_can_be_forced_through(
    settings: Settings, aws: AwsClients, env: dict[str, Any]
) -> None:
    # order items whose orders and products never came
    files = generate_set(seed=11, orders=30, days=1, name="orphans", tables=("order_items",))
    drop(aws, settings, files)
    assert sets_launched(settings, env) == []  # waiting for their orders and products

    set_id = incomplete_set(settings, env)

    refused = run_set(settings, env, set_id)
    assert not refused.success
    message = refused.get_step_failure_events()[0].step_failure_data.user_failure_data.description
    assert "incomplete" in message
    assert '{"ops": {"filedrop__bronze": {"config": {"force": true}}}}' in message
    assert keys(aws, settings, "landing/") == sorted(files)  # nothing moved: it may still be completed

    forced = run_set(settings, env, set_id, force=True)
    assert forced.success
    kpi_metadata = {m.asset_key.path[-1]: m.metadata for m in forced.asset_materializations_for_node("filedrop_kpis")}
    items = arrow_csv.read_csv(io.BytesIO(next(iter(files.values())))).num_rows
    assert kpi_metadata["order_kpis"]["items_without_order"].value == items  # counted, not dropped
    assert read_kpis(env["lake"], "order_kpis").num_rows == 0  # no order, no order date
    assert keys(aws, settings, "landing/") == []


def _replacement(files: dict[str, bytes], key: str) -> bytes:
    """The producer's corrected upload of ``key``: the same orders, one status changed."""
    corrected = files[key].replace(b",delivered,", b",cancelled,", 1)
    assert corrected != files[key]
    return corrected


def body(aws: AwsClients, settings: Settings, key: str) -> bytes:
    return aws.s3.get_object(Bucket=settings.lake_bucket, Key=key)["Body"].read()


def test_a_file_replaced_in_landing_after_its_set_formed_is_not_loaded_under_that_set(
    settings: Settings, aws: AwsClients, env: dict[str, Any]
) -> None:
    files = generate_set(seed=13, orders=30, days=1, name="swap")
    drop(aws, settings, files)
    [first] = sets_launched(settings, env)
    orders = next(k for k in files if k.startswith("landing/orders/"))
    corrected = _replacement(files, orders)
    drop(aws, settings, {orders: corrected})  # a new upload of the key before the set's run read it

    refused = run_set(settings, env, first)

    assert not refused.success
    message = refused.get_step_failure_events()[0].step_failure_data.user_failure_data.description
    assert "replaced by a newer upload" in message
    assert keys(aws, settings, "landing/") == sorted(files)  # nothing moved, nothing archived
    assert body(aws, settings, orders) == corrected
    [second] = sets_launched(settings, env)  # the new upload: a file of its own
    assert run_set(settings, env, second).success
    [archived] = keys(aws, settings, "archive/")
    assert f"/{second}/" in archived
    assert keys(aws, settings, "landing/") == sorted(k for k in files if k != orders)


def test_a_file_replaced_before_its_set_is_archived_stays_in_landing_for_its_own_set(
    settings: Settings, aws: AwsClients, env: dict[str, Any]
) -> None:
    files = generate_set(seed=14, orders=30, days=1, name="late-swap")
    drop(aws, settings, files)
    [first] = sets_launched(settings, env)
    loaded = run_set(settings, env, first, selection=filedrop.FILEDROP_ASSETS - AssetSelection.assets(filedrop.ARCHIVE))
    assert loaded.success
    orders = next(k for k in files if k.startswith("landing/orders/"))
    corrected = _replacement(files, orders)
    drop(aws, settings, {orders: corrected})  # after the set was read, before it was archived

    assert run_set(settings, env, first, selection=AssetSelection.assets(filedrop.ARCHIVE)).success

    assert keys(aws, settings, "landing/") == [orders]  # the new upload was neither moved nor deleted
    assert body(aws, settings, orders) == corrected
    assert len(keys(aws, settings, "archive/")) == 2  # the set's other files; its own orders bytes are gone
    [second] = sets_launched(settings, env)
    assert run_set(settings, env, second).success
    assert keys(aws, settings, "landing/") == []


def test_a_set_cut_off_while_being_quarantined_is_rejected_again_with_every_file_in_quarantine(
    settings: Settings, aws: AwsClients, env: dict[str, Any]
) -> None:
    files = FAULTS["orders.status: enum"](generate_set(seed=15, orders=30, days=1, name="cut"))
    drop(aws, settings, files)
    [set_id] = sets_launched(settings, env)
    # an earlier attempt quarantined one file, then its process died (no report, no outcome yet)
    items = next(k for k in files if k.startswith("landing/order_items/"))
    Landing(aws.s3, settings.lake_bucket).move(items, quarantine_key(set_id, items))

    result = run_set(settings, env, set_id)

    assert not result.success
    message = result.get_step_failure_events()[0].step_failure_data.user_failure_data.description
    assert message.startswith(f"set {set_id} rejected: orders.status: enum")
    assert keys(aws, settings, "landing/") == []
    assert keys(aws, settings, f"quarantine/landing/{set_id}/") == sorted(
        [quarantine_key(set_id, k) for k in files] + [quarantine_report_key(set_id)]
    )


def test_a_redrop_after_a_set_that_did_not_finish_loading_is_loaded_again(
    settings: Settings, aws: AwsClients, env: dict[str, Any]
) -> None:
    files = generate_set(seed=16, orders=40, days=1, name="again")
    drop(aws, settings, files)
    [first] = sets_launched(settings, env)
    assert run_set(settings, env, first).success
    before = read_kpis(env["lake"], "order_kpis")

    # the same orders with returns, loaded into silver and the KPIs, but not archived (a failed
    # step, or a run still going): the latest *loaded* set is still the first one
    orders = next(k for k in files if k.startswith("landing/orders/"))
    returned = files[orders].replace(b",delivered,", b",returned,")
    drop(aws, settings, {orders: returned})
    [second] = sets_launched(settings, env)
    partial = run_set(
        settings, env, second, selection=filedrop.FILEDROP_ASSETS - AssetSelection.assets(filedrop.ARCHIVE)
    )
    assert partial.success
    assert not read_kpis(env["lake"], "order_kpis").equals(before)

    drop(aws, settings, files)  # the first set's very files again: their rows must win again
    [third] = sets_launched(settings, env)
    again = run_set(settings, env, third)

    assert again.success
    assert "redrop_of" not in again.asset_materializations_for_node("filedrop__bronze")[0].metadata
    after = read_kpis(env["lake"], "order_kpis").drop_columns(["updated_by_set"])
    assert after.equals(before.drop_columns(["updated_by_set"]))


def test_two_files_whose_names_differ_only_in_case_are_both_loaded(
    settings: Settings, aws: AwsClients, env: dict[str, Any]
) -> None:
    files = generate_set(seed=17, orders=40, days=1, name="split")
    orders = next(k for k in files if k.startswith("landing/orders/"))
    header, *rows = files.pop(orders).splitlines(keepends=True)
    half = len(rows) // 2
    files[orders] = header + b"".join(rows[:half])
    files[orders.removesuffix(".csv") + ".CSV"] = header + b"".join(rows[half:])
    drop(aws, settings, files)
    [set_id] = sets_launched(settings, env)

    assert run_set(settings, env, set_id).success

    assert sum(r["total_orders"] for r in read_kpis(env["lake"], "order_kpis").to_pylist()) == len(rows)
    # silver is typed as the contract says, nullability too (required columns are not nullable)
    silver = pq.read_schema(env["lake"].path(f"{silver_dir('orders', set_id)}/data.parquet"))
    assert silver.equals(arrow_schema("orders", contract="filedrop"))


def incomplete_set(settings: Settings, env: dict[str, Any]) -> str:
    """A tick once the set wait is over: the waiting files become one incomplete set, added as a
    partition (the daemon's part applied) and reported, not launched."""
    from cart_lakehouse.settings import lake_settings

    context = build_sensor_context(instance=env["instance"], resources=resources(settings, env["root"]))
    after_wait = datetime.now(UTC) + timedelta(seconds=lake_settings().filedrop_set_wait_seconds + 60)
    result = landing_files_sensor(lambda: after_wait)(context)
    assert isinstance(result, SensorResult)
    assert not result.run_requests
    [set_id] = [k for r in result.dynamic_partitions_requests or [] for k in r.partition_keys or []]
    env["instance"].add_dynamic_partitions("filedrop_sets", [set_id])
    return set_id


def test_an_incomplete_set_loads_once_its_orders_and_products_have_loaded(
    settings: Settings, aws: AwsClients, env: dict[str, Any]
) -> None:
    items = generate_set(seed=12, orders=30, days=1, name="early", tables=("order_items",))
    drop(aws, settings, items)
    waiting = incomplete_set(settings, env)
    assert not run_set(settings, env, waiting).success  # refused: its orders and products are missing

    drop(aws, settings, generate_set(seed=12, orders=30, days=1, name="late", tables=("orders", "products")))
    [completing] = sets_launched(settings, env)
    assert run_set(settings, env, completing).success

    rerun = run_set(settings, env, waiting)  # no force needed any more
    assert rerun.success
    assert read_kpis(env["lake"], "order_kpis").column("total_items_sold").to_pylist()[0] > 0
    assert keys(aws, settings, "landing/") == []
