"""The definitions `dagster dev` loads: the graph from the external DynamoDB table to gold."""

from dagster import AssetKey

from cart_lakehouse.definitions import defs


def test_the_dynamodb_table_is_an_external_asset_of_the_ingest_group() -> None:
    graph = defs.resolve_asset_graph()
    table = graph.get(AssetKey(["dynamodb", "purchases"]))
    assert not table.is_materializable
    assert table.group_name == "ingest"
    assert table.owners == ["team:cart-platform"]
    assert "DynamoDB" in (table.description or "")


def test_bronze_reads_the_table_and_everything_hourly_shares_one_partitioning() -> None:
    graph = defs.resolve_asset_graph()
    bronze = graph.get(AssetKey(["bronze", "purchases"]))
    assert AssetKey(["dynamodb", "purchases"]) in bronze.parent_keys
    hourly = {
        key: node.partitions_def
        for key, node in ((k, graph.get(k)) for k in graph.materializable_asset_keys)
        if node.group_name in ("bronze", "silver", "gold", "star", "marts")
    }
    assert len(set(map(id, hourly.values()))) == 1


def test_automation_is_defined() -> None:
    repo = defs.get_repository_def()
    assert {s.name for s in repo.sensor_defs} >= {
        "alert_on_run_failure",
        "dlq_redrive",
        "hour_closed",
        "late_data",
        "mart_freshness",
    }
    assert [s.name for s in repo.schedule_defs] == ["hourly_lakehouse_schedule"]
    assert repo.get_job("hourly_lakehouse").partitions_def is not None


def test_each_mart_has_a_freshness_check_against_silver() -> None:
    graph = defs.resolve_asset_graph()
    for mart in ("sales_performance", "items_category_performance"):
        key = AssetKey(["gold", mart])
        assert graph.get(key).group_name == "marts"
        assert any(check.name == "fresh_vs_silver" for check in graph.get_check_keys_for_assets({key}))
