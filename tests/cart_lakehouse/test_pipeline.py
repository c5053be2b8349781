"""The lakehouse end to end, in-process: DynamoDB (moto server) → bronze → silver (PySpark) → gold,
the star schema and the marts (dbt-duckdb), with every quality gate, for real hourly partitions.
Their rows are compared with an independent computation from the purchases put into DynamoDB."""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
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
from cart_lakehouse.assets.gold import PUBLISH_ALL
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
LATER = Hour(DAY_START + timedelta(days=1, hours=10))  # the next day
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


def day_of(purchase: dict[str, Any]) -> date:
    return date.fromisoformat(purchase["ingest_hour"][:10])


def period_figures(rows: Sequence[dict[str, Any]], is_new: Any) -> dict[str, Any]:
    """sales_performance's figures of one period's purchases (``is_new``: whether a buyer's first
    purchase ever is in the period)."""
    revenue = sum((Decimal(str(r["total_amount"])) for r in rows), Decimal(0)).quantize(CENT)
    buyers = {r["buyer_id"] for r in rows}
    installments = [r["number_of_installments"] for r in rows]
    new = len({b for b in buyers if is_new(b)})
    buckets = {"1": (1, 1), "2_3": (2, 3), "4_6": (4, 6), "7_12": (7, 12), "13_24": (13, 24)}
    return {
        "revenue": revenue,
        "purchases": len(rows),
        "average_ticket": (revenue / len(rows)).quantize(CENT, ROUND_HALF_UP),
        "buyers": len(buyers),
        "new_buyers": new,
        "returning_buyers": len(buyers) - new,
        "installment_share": sum(n > 1 for n in installments) / len(rows),
        "average_installments": sum(installments) / len(rows),
        **{f"installments_{k}": sum(lo <= n <= hi for n in installments) for k, (lo, hi) in buckets.items()},
    }


def assert_marts_match(lake: Lake, purchases: Sequence[dict[str, Any]]) -> None:
    """The marts computed here from what DynamoDB holds: sales per hour and per day with new and
    returning buyers, the previous day and the 7-day moving figures; sales per day, category and
    product with shares and ranks (the seed's categories: no product file was dropped)."""
    first_at: dict[str, datetime] = {}
    first_day: dict[str, date] = {}
    for p in purchases:
        first_at[p["buyer_id"]] = min(first_at.get(p["buyer_id"], received(p)), received(p))
        first_day[p["buyer_id"]] = min(first_day.get(p["buyer_id"], day_of(p)), day_of(p))
    by_period: dict[tuple[str, datetime], list[dict[str, Any]]] = defaultdict(list)
    for p in purchases:
        hour = Hour.from_ingest_hour(p["ingest_hour"]).start
        by_period[("hour", hour)].append(p)
        by_period[("day", hour.replace(hour=0))].append(p)
    want = {}
    for (grain, start), rows in by_period.items():
        if grain == "hour":
            want[(grain, start)] = period_figures(
                rows, lambda b, s=start: first_at[b].replace(minute=0, second=0, microsecond=0) == s
            )
        else:
            want[(grain, start)] = period_figures(rows, lambda b, s=start: first_day[b] == s.date())
    got = {(r["grain"], r["period_start"]): r for r in gold(lake, "sales_performance")}
    assert set(got) == set(want)
    for (grain, start), w in want.items():
        row = got[(grain, start)]
        assert row["day"] == start.date()
        doubles = ("installment_share", "average_installments")
        assert {k: row[k] for k in w if k not in doubles} == {k: v for k, v in w.items() if k not in doubles}, start
        assert [row[k] for k in doubles] == pytest.approx([w[k] for k in doubles])
        before = [want.get((grain, start - timedelta(days=n))) for n in range(7)]
        prev = before[1] or {"revenue": Decimal("0.00"), "purchases": 0}
        assert (row["revenue_prev"], row["purchases_prev"]) == (prev["revenue"], prev["purchases"])
        assert row["revenue_dod_pct"] == (
            None
            if not prev["purchases"]
            else pytest.approx(100 * float((w["revenue"] - prev["revenue"]) / prev["revenue"]))
        )
        assert row["purchases_dod_pct"] == (
            None
            if not prev["purchases"]
            else pytest.approx(100 * (w["purchases"] - prev["purchases"]) / prev["purchases"])
        )
        assert row["revenue_7d_avg"] == pytest.approx(float(sum(b["revenue"] for b in before if b)) / 7)
        assert row["purchases_7d_avg"] == pytest.approx(sum(b["purchases"] for b in before if b) / 7)

    products = seed_products()
    items: dict[tuple[date, str, str], list[Decimal]] = defaultdict(list)
    for p in purchases:
        product = products.get(p["product_id"])
        items[(day_of(p), product["category"] if product else "unknown", p["product_id"])].append(
            Decimal(str(p["total_amount"]))
        )
    revenue = {k: sum(v, Decimal(0)).quantize(CENT) for k, v in items.items()}
    category_revenue: dict[tuple[date, str], Decimal] = defaultdict(Decimal)
    day_revenue: dict[date, Decimal] = defaultdict(Decimal)
    for (day, category, _), amount in revenue.items():
        category_revenue[(day, category)] += amount
        day_revenue[day] += amount
    rows = {(r["day"], r["category"], r["product_id"]): r for r in gold(lake, "items_category_performance")}
    assert set(rows) == set(items)
    for key, row in rows.items():
        day, category, product_id = key
        product = products.get(product_id)
        peers = sorted((-v, k[2]) for k, v in revenue.items() if k[:2] == (day, category))
        categories = sorted((-v, c) for (d, c), v in category_revenue.items() if d == day)
        assert (row["revenue"], row["units"], row["category_revenue"]) == (
            revenue[key],
            len(items[key]),
            category_revenue[(day, category)],
        )
        assert (row["product_name"], row["department"]) == (
            (product["product_name"], product["department"]) if product else (None, None)
        )
        assert row["share_of_category"] == pytest.approx(float(revenue[key] / category_revenue[(day, category)]))
        assert row["share_of_day"] == pytest.approx(float(revenue[key] / day_revenue[day]))
        assert row["rank_in_category"] == peers.index((-revenue[key], product_id)) + 1
        assert row["category_rank"] == categories.index((-category_revenue[(day, category)], category)) + 1
        assert row["return_rate"] is None  # no file-drop KPIs in this lake


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
    assert_marts_match(lake, purchases)
    assert {
        "star/dim_product:current_matches_reference",
        "star/fact_purchases:rows_match_silver",
        "gold/sales_performance:revenue_matches_silver",
        "gold/items_category_performance:revenue_matches_silver",
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
    # the tables publish side by side: the step's wall for all of them is reported too
    assert spans[PUBLISH_ALL] > 0


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
    following = stored_purchases(LATER.start, 40, seed=44)
    put_purchases(aws, settings.purchases_table, following)
    assert run(resources, LATER).success
    before = {m: gold(lake, m) for m in ("sales_hourly", "sales_performance")}

    assert run(resources, LATER).success  # a rerun changes nothing
    assert {m: gold(lake, m) for m in before} == before

    # late: two hours of the day before, stored after the next day was materialized (and a buyer
    # of the next day's first purchase among them), as one run (single-run backfill policy). The
    # next day's previous-day and 7-day figures depend on them: the run rewrites its marts too
    first = stored_purchases(HOUR.start, 60, seed=45)
    returning = {**stored_purchases(NEXT.start, 1, seed=47)[0], "buyer_id": following[0]["buyer_id"]}
    second = [*stored_purchases(NEXT.start, 25, seed=46), returning]
    put_purchases(aws, settings.purchases_table, first + second)
    backfill = run(resources, HOUR, NEXT)

    assert backfill.success
    everything = first + second + following
    assert_gold_matches(lake, everything)
    assert_star_matches(lake, everything)
    assert_marts_match(lake, everything)  # the next day's prev, day-over-day, 7-day and new buyers too
    assert {r["day"] for r in gold(lake, "buyer_daily")} == {HOUR.start.date(), LATER.start.date()}
    later_day = next(
        r for r in gold(lake, "sales_performance") if r["grain"] == "day" and r["day"] == LATER.start.date()
    )
    assert later_day["revenue_prev"] > 0


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


def failed_gold_run(resources: dict[str, Any]) -> tuple[str, set[AssetKey]]:
    """Run gold alone for HOUR, which must fail: its one step failure's message, and what it materialized."""
    result = run(resources, HOUR, selection=AssetSelection.groups("gold"), raise_on_error=False)
    assert not result.success
    (failure,) = result.get_step_failure_events()
    return str(failure.event_specific_data), {e.asset_key for e in result.get_asset_materialization_events()}


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

    message, materialized = failed_gold_run(broken)

    assert "dbt build failed" in message
    assert "sales_hourly" in message
    assert "no_such_column" in message
    assert gold(lake, "sales_hourly") == published
    assert materialized == {AssetKey(["gold", "sales_by_category_daily"]), AssetKey(["gold", "buyer_daily"])}


def test_a_table_that_cannot_be_published_fails_the_run_and_the_others_are_materialized(
    settings: Settings, aws: AwsClients, lake: Lake, resources: dict[str, Any]
) -> None:
    """The tables publish side by side: one whose files cannot be written fails the gold step with
    the reason, and every table that did publish is materialized, so the run's record says what
    the lake holds."""
    put_purchases(aws, settings.purchases_table, stored_purchases(HOUR.start, 20, seed=53))
    assert run(resources, HOUR).success
    folder = Path(lake.path(GOLD_TABLES["sales_hourly"].location))
    shutil.rmtree(folder)
    folder.write_text("not a folder: nothing can be written under it\n")

    message, materialized = failed_gold_run(resources)

    assert "publishing failed for sales_hourly" in message
    assert "Rerun the partition" in message
    assert materialized == {AssetKey(["gold", "sales_by_category_daily"]), AssetKey(["gold", "buyer_daily"])}
