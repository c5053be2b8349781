"""The lakehouse end to end, in-process: DynamoDB (moto server) → bronze → silver (PySpark) → gold
and the star schema (dbt-duckdb), with every quality gate, for real hourly partitions. Gold and star
rows are compared with an independent computation from the purchases put into DynamoDB."""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from dagster import AssetKey, AssetSelection, ExecuteInProcessResult
from dagster_dbt import DbtCliResource
from pyspark.sql import SparkSession

from cart_api.settings import Settings
from cart_aws.aws import AwsClients
from cart_dev.seed import put_purchases, stored_purchases
from cart_lakehouse.gold_project import GOLD_PROJECT
from cart_lakehouse.lake import Lake
from cart_lakehouse.layout import GOLD_TABLES, PRODUCTS_FILE, bronze_file
from cart_lakehouse.local import local_resources
from cart_lakehouse.partitions import Hour, hourly_partitions
from tests.cart_lakehouse.pipeline import run
from tests.cart_lakehouse.sensors.test_alerts import alerts, subscribe_alerts
from tests.conftest import SPARK_SETTINGS

pytestmark = pytest.mark.e2e  # long end to end: `make test-quick` leaves it out

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
# two hours of one day (the daily tables must add them up), far enough from midnight
DAY_START = (NOW - timedelta(days=2)).replace(hour=0)
HOUR, NEXT = Hour(DAY_START + timedelta(hours=10)), Hour(DAY_START + timedelta(hours=11))
CENT = Decimal("0.01")


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake.open(str(tmp_path / "lake"))


@pytest.fixture
def resources(settings: Settings, lake: Lake, spark: SparkSession) -> dict[str, Any]:
    return local_resources(settings, lake.root, SPARK_SETTINGS)


def gold(lake: Lake, model: str) -> list[dict[str, Any]]:
    """Every published row of a gold, star or mart model."""
    files = [lake.path(f) for f in lake.files(GOLD_TABLES[model].location) if f.endswith(".parquet")]
    if not files:
        return []
    return ds.dataset(files, format="parquet").to_table().to_pylist()


def seed_products() -> dict[str, dict[str, Any]]:
    """The committed products CSV, read here as plain rows."""
    csv = Path(__file__).resolve().parents[2] / "cart_lakehouse/data/products.csv"
    return {row["product_id"]: row for row in ds.dataset(str(csv), format="csv").to_table().to_pylist()}


def expected(purchases: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Gold computed here, independently of Spark and dbt, from what DynamoDB holds."""
    products = {product_id: row["category"] for product_id, row in seed_products().items()}
    hourly: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for p in purchases:
        hourly[p["ingest_hour"]].append(p)
    sales_hourly = {}
    for hour, rows in hourly.items():
        amounts = [Decimal(str(r["total_amount"])) for r in rows]
        sales_hourly[hour] = {
            "purchases": len(rows),
            "revenue": sum(amounts, Decimal(0)).quantize(CENT),
            "unique_buyers": len({r["buyer_id"] for r in rows}),
            "installment_share": sum(r["number_of_installments"] > 1 for r in rows) / len(rows),
            "average_installments": sum(r["number_of_installments"] for r in rows) / len(rows),
        }
    categories: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    buyers: dict[tuple[str, str], list[Decimal]] = defaultdict(list)
    for p in purchases:
        day = p["ingest_hour"][:10]
        categories[(day, products.get(p["product_id"], "unknown"))] += Decimal(str(p["total_amount"]))
        buyers[(day, p["buyer_id"])].append(Decimal(str(p["total_amount"])))
    return {"sales_hourly": sales_hourly, "categories": dict(categories), "buyers": dict(buyers)}


def assert_gold_matches(lake: Lake, purchases: Sequence[dict[str, Any]]) -> None:
    want = expected(purchases)
    hourly = {r["hour"].strftime("%Y-%m-%dT%H"): r for r in gold(lake, "sales_hourly")}
    assert set(hourly) == set(want["sales_hourly"])
    for hour, w in want["sales_hourly"].items():
        got = hourly[hour]
        assert (got["purchases"], got["revenue"], got["unique_buyers"]) == (
            w["purchases"],
            w["revenue"],
            w["unique_buyers"],
        )
        assert got["installment_share"] == pytest.approx(w["installment_share"])
        assert got["average_installments"] == pytest.approx(w["average_installments"])
        assert got["average_ticket"] == pytest.approx(float(w["revenue"]) / w["purchases"])
    by_category = {(r["day"].isoformat(), r["category"]): r["revenue"] for r in gold(lake, "sales_by_category_daily")}
    assert by_category == {k: v.quantize(CENT) for k, v in want["categories"].items()}
    by_buyer = {(r["day"].isoformat(), r["buyer_id"]): (r["purchases"], r["spend"]) for r in gold(lake, "buyer_daily")}
    assert by_buyer == {k: (len(v), sum(v, Decimal(0)).quantize(CENT)) for k, v in want["buyers"].items()}


def received(purchase: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(purchase["received_at"])


def assert_star_matches(lake: Lake, purchases: Sequence[dict[str, Any]]) -> None:
    """The star schema computed here from what DynamoDB holds: a fact row per purchase with the keys
    of its dimensions, the buyers' history, the seed's products (one version each) and the calendar."""
    products = seed_products()
    fact = {r["purchase_id"]: r for r in gold(lake, "fact_purchases")}
    assert set(fact) == {p["purchase_id"] for p in purchases}
    for p in purchases:
        row, product = fact[p["purchase_id"]], products.get(p["product_id"])
        assert row["product_key"] == (f"{p['product_id']}@seed" if product else "unknown")
        assert row["category"] == (product["category"] if product else "unknown")
        assert row["date_key"] == date.fromisoformat(p["ingest_hour"][:10])
        assert row["ingest_hour"] == Hour.from_ingest_hour(p["ingest_hour"]).start
        assert (row["buyer_id"], row["total_amount"], row["received_at"]) == (
            p["buyer_id"],
            Decimal(str(p["total_amount"])).quantize(CENT),
            received(p),
        )
    by_buyer: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for p in purchases:
        by_buyer[p["buyer_id"]].append(p)
    buyers = {r["buyer_id"]: r for r in gold(lake, "dim_buyer")}
    assert buyers == {
        buyer: {
            "buyer_id": buyer,
            "first_purchase_at": min(received(p) for p in rows),
            "last_purchase_at": max(received(p) for p in rows),
            "first_purchase_day": min(date.fromisoformat(p["ingest_hour"][:10]) for p in rows),
            "purchases_to_date": len(rows),
            "spend_to_date": sum((Decimal(str(p["total_amount"])) for p in rows), Decimal(0)).quantize(CENT),
        }
        for buyer, rows in by_buyer.items()
    }
    versions = {r["product_key"]: r for r in gold(lake, "dim_product")}
    assert set(versions) == {f"{i}@seed" for i in products} | {"unknown"}
    assert all(v["is_current"] and v["valid_to"] is None for v in versions.values())
    assert versions["unknown"]["category"] == "unknown"
    calendar = {r["date_key"]: r for r in gold(lake, "dim_date")}
    assert min(calendar) == hourly_partitions.start.date()
    assert max(calendar) == date(datetime.now(UTC).year + 1, 12, 31)
    day = HOUR.start.date()
    iso = day.isocalendar()
    assert calendar[day] == {
        "date_key": day,
        "weekday": iso.weekday,
        "weekday_name": day.strftime("%A"),
        "iso_week": iso.week,
        "iso_year": iso.year,
        "month": day.month,
        "month_name": day.strftime("%B"),
        "quarter": (day.month - 1) // 3 + 1,
        "year": day.year,
    }


def checks(result: ExecuteInProcessResult) -> dict[str, bool]:
    return {f"{e.asset_key.to_user_string()}:{e.check_name}": e.passed for e in result.get_asset_check_evaluations()}


def test_an_hour_flows_from_dynamodb_to_gold_and_matches_an_independent_computation(
    settings: Settings, aws: AwsClients, lake: Lake, resources: dict[str, Any]
) -> None:
    purchases = stored_purchases(HOUR.start, 120, seed=41)
    put_purchases(aws, settings.purchases_table, purchases + stored_purchases(NEXT.start, 30, seed=42))

    result = run(resources, HOUR)

    assert result.success
    evaluations = checks(result)
    assert all(evaluations.values()), evaluations
    assert {
        "silver/purchases:contract",
        "silver/purchases:reconciles_with_bronze",
        "gold/sales_hourly:contract",
    } <= set(evaluations)
    assert "gold/buyer_daily:buyer_daily__primary_key__unique" in evaluations  # a dbt test, as an asset check
    assert_gold_matches(lake, purchases)  # only HOUR: NEXT was not materialized
    assert_star_matches(lake, purchases)
    assert {
        "star/dim_product:current_matches_reference",
        "star/fact_purchases:fact_purchases__product_key__relationship",  # generated from the contract
        "star/dim_product:dim_product__scd2__valid",
    } <= set(evaluations)
    materialized = {e.asset_key: e.materialization.metadata for e in result.get_asset_materialization_events()}
    assert {AssetKey(["gold", m]) for m in ("sales_hourly", "sales_by_category_daily", "buyer_daily")} <= set(
        materialized
    )
    # every gold model reports where the gold step's time went: dbt as a whole and its own share
    spans = materialized[AssetKey(["gold", "sales_hourly"])]["timings"].value
    assert spans["dbt build (all models and tests)"] >= spans["dbt model"] > 0
    assert any(name.startswith("dbt tests (") for name in spans)
    assert {"publish", "Glue registration"} <= set(spans)


def test_glue_has_every_table_and_partition(
    settings: Settings, aws: AwsClients, lake: Lake, resources: dict[str, Any]
) -> None:
    put_purchases(aws, settings.purchases_table, stored_purchases(HOUR.start, 20, seed=43))
    assert run(resources, HOUR).success

    tables = {t["Name"]: t for t in aws.glue.get_tables(DatabaseName=settings.glue_database)["TableList"]}
    assert {"silver_purchases", "gold_sales_hourly", "gold_sales_by_category_daily", "gold_buyer_daily"} <= set(tables)
    columns = [c["Name"] for c in tables["gold_sales_hourly"]["StorageDescriptor"]["Columns"]]
    assert columns[:3] == ["hour", "purchases", "revenue"]
    partitions = aws.glue.get_partitions(DatabaseName=settings.glue_database, TableName="silver_purchases")
    assert [p["Values"] for p in partitions["Partitions"]] == [list(HOUR.path_values)]
    for table in ("gold_sales_hourly", "gold_buyer_daily"):
        daily = aws.glue.get_partitions(DatabaseName=settings.glue_database, TableName=table)
        assert [p["Values"] for p in daily["Partitions"]] == [[HOUR.start.date().isoformat()]]
        assert daily["Partitions"][0]["StorageDescriptor"]["Location"].endswith(f"day={HOUR.start.date()}/")


def test_reruns_late_data_and_a_backfill_converge_to_what_dynamodb_holds(
    settings: Settings, aws: AwsClients, lake: Lake, resources: dict[str, Any]
) -> None:
    first = stored_purchases(HOUR.start, 60, seed=44)
    put_purchases(aws, settings.purchases_table, first)
    assert run(resources, HOUR).success
    before = gold(lake, "sales_hourly")

    assert run(resources, HOUR).success  # a rerun changes nothing
    assert gold(lake, "sales_hourly") == before

    late = stored_purchases(HOUR.start, 15, seed=45)  # stored after the hour was materialized
    second = stored_purchases(NEXT.start, 25, seed=46)
    put_purchases(aws, settings.purchases_table, late + second)
    backfill = run(resources, HOUR, NEXT)  # both hours in one run (single-run backfill policy)

    assert backfill.success
    assert_gold_matches(lake, first + late + second)
    assert_star_matches(lake, first + late + second)
    (day,) = {r["day"] for r in gold(lake, "buyer_daily")}
    assert day == HOUR.start.date()


def test_purchases_dynamodb_lost_stay_in_silver_and_gold_late_ones_arrive_and_an_alert_is_published(
    settings: Settings, aws: AwsClients, lake: Lake, resources: dict[str, Any]
) -> None:
    first = stored_purchases(HOUR.start, 40, seed=50)
    put_purchases(aws, settings.purchases_table, first)
    assert run(resources, HOUR).success
    inbox = subscribe_alerts(aws, settings)

    lost = first[:3]  # the table loses three (a local AWS restarted and reseeded) ...
    for p in lost:
        aws.dynamodb.delete_item(TableName=settings.purchases_table, Key={"purchase_id": {"S": p["purchase_id"]}})
    late = stored_purchases(HOUR.start, 5, seed=51)  # ... and late purchases arrive
    put_purchases(aws, settings.purchases_table, late)
    result = run(resources, HOUR)

    assert result.success
    evaluations = checks(result)
    assert evaluations.pop("bronze/purchases:source_not_shrunk") is False
    assert all(evaluations.values()), evaluations
    silver = ds.dataset(lake.path(f"silver/purchases/{HOUR.path}"), format="parquet").to_table()
    assert set(silver.column("purchase_id").to_pylist()) == {p["purchase_id"] for p in first + late}
    assert_gold_matches(lake, first + late)
    (alert,) = alerts(aws, inbox)
    assert alert["kind"] == "source_shrunk"
    assert alert["details"]["missing_per_hour"] == {HOUR.key: 3}
    assert sorted(alert["details"]["sample"]) == sorted(p["purchase_id"] for p in lost)


def test_an_empty_hour_materializes_with_no_rows(lake: Lake, resources: dict[str, Any]) -> None:
    result = run(resources, HOUR)

    assert result.success
    assert lake.read_bytes(bronze_file(HOUR)) == b""
    assert gold(lake, "sales_hourly") == []
    assert all(checks(result).values())


def test_a_bad_row_is_quarantined_and_gold_counts_only_clean_rows(
    settings: Settings, aws: AwsClients, lake: Lake, resources: dict[str, Any]
) -> None:
    purchases = stored_purchases(HOUR.start, 30, seed=47)
    put_purchases(aws, settings.purchases_table, purchases)
    assert run(resources, HOUR, selection=AssetSelection.groups("reference", "bronze")).success
    bad = {**purchases[0], "total_amount": -5}  # a row that slipped past the API, e.g. written by hand
    lines = lake.read_bytes(bronze_file(HOUR)).decode().splitlines()
    lake.write_bytes(bronze_file(HOUR), "\n".join([*lines, json.dumps(bad)]).encode() + b"\n")

    result = run(resources, HOUR, selection=AssetSelection.groups("silver", "gold", "star"))

    assert result.success
    quarantine = lake.files("silver/purchases_quarantine")
    rows = ds.dataset([lake.path(f) for f in quarantine if f.endswith(".parquet")]).to_table().to_pylist()
    assert [r["reason"] for r in rows] == ["total_amount: must be > 0"]
    assert_gold_matches(lake, purchases)
    assert_star_matches(lake, purchases)
    assert checks(result)["silver/purchases:reconciles_with_bronze"]


def test_a_failing_gate_blocks_gold_and_keeps_the_published_gold(
    settings: Settings, aws: AwsClients, lake: Lake, resources: dict[str, Any]
) -> None:
    """A bad reference-data change (a category the contract does not allow) breaks silver's gate."""
    put_purchases(aws, settings.purchases_table, stored_purchases(HOUR.start, 40, seed=48))
    assert run(resources, HOUR).success
    published = gold(lake, "sales_by_category_daily")
    products = pq.read_table(lake.path(PRODUCTS_FILE))
    renamed = pc.if_else(pc.equal(products.column("category"), "home"), "garden", products.column("category"))
    pq.write_table(products.set_column(2, "category", renamed), lake.path(PRODUCTS_FILE))

    result = run(resources, HOUR, selection=AssetSelection.groups("silver", "gold"), raise_on_error=False)

    assert not result.success
    failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
    assert [f"{e.asset_key.to_user_string()}:{e.check_name}" for e in failed] == ["silver/purchases:contract"]
    assert "garden" in str(failed[0].metadata["sample"].value)
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert not any(key.path[0] == "gold" for key in materialized)
    assert gold(lake, "sales_by_category_daily") == published


def test_a_failing_dbt_test_holds_back_only_its_model(
    settings: Settings, aws: AwsClients, lake: Lake, resources: dict[str, Any]
) -> None:
    """Write-audit-publish: gold built from silver that (by hand) holds a category the contract does
    not allow fails dbt's accepted_values test; that model keeps its published files, the others publish."""
    first = stored_purchases(HOUR.start, 30, seed=49)
    put_purchases(aws, settings.purchases_table, first)
    assert run(resources, HOUR).success
    published = gold(lake, "sales_by_category_daily")
    (silver,) = [f for f in lake.files(f"silver/purchases/{HOUR.path}") if f.endswith(".parquet")]
    table = pq.read_table(lake.path(silver))
    table = table.set_column(
        table.schema.get_field_index("category"), table.schema.field("category"), pc.utf8_upper(table["category"])
    )
    pq.write_table(table, lake.path(silver))

    result = run(resources, HOUR, selection=AssetSelection.groups("gold"), raise_on_error=False)

    assert not result.success
    failed = sorted(e.check_name for e in result.get_asset_check_evaluations() if not e.passed)
    assert failed == ["sales_by_category_daily__category__allowed_values"]
    assert gold(lake, "sales_by_category_daily") == published
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert materialized == {AssetKey(["gold", "sales_hourly"]), AssetKey(["gold", "buyer_daily"])}


def test_a_dbt_model_that_errors_fails_the_run_naming_it_and_publishes_nothing_of_it(
    settings: Settings, aws: AwsClients, lake: Lake, resources: dict[str, Any], tmp_path: Path
) -> None:
    """dbt runs in the step's process: a model whose SQL fails at run time fails the gold step with
    dbt's error for that model, its published files stay, and the models that built are published."""
    put_purchases(aws, settings.purchases_table, stored_purchases(HOUR.start, 20, seed=52))
    assert run(resources, HOUR).success
    published = gold(lake, "sales_hourly")
    project = tmp_path / "dbt_project"
    shutil.copytree(GOLD_PROJECT.project_dir, project, ignore=shutil.ignore_patterns("target", "logs"))
    model = project / "models" / "gold" / "sales_hourly.sql"
    model.write_text(model.read_text().replace("count(*)::bigint", "count(no_such_column)::bigint"))
    broken = {**resources, "dbt": DbtCliResource(project_dir=str(project))}

    result = run(broken, HOUR, selection=AssetSelection.groups("gold"), raise_on_error=False)

    assert not result.success
    (failure,) = result.get_step_failure_events()
    message = str(failure.event_specific_data)
    assert "dbt build failed" in message
    assert "sales_hourly" in message
    assert "no_such_column" in message
    assert gold(lake, "sales_hourly") == published
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert materialized == {AssetKey(["gold", "sales_by_category_daily"]), AssetKey(["gold", "buyer_daily"])}
