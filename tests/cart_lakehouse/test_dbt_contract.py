"""dbt's tests of gold come from the contract: the committed schema file is what the contract gives."""

from __future__ import annotations

import yaml

from cart_lakehouse.dbt_contract import SCHEMA_FILE, main, render
from contracts import load_contract


def test_the_committed_dbt_tests_agree_with_the_contract() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == render(), "run: python -m cart_lakehouse.dbt_contract"
    assert main(["--check"]) == 0


def test_every_rule_of_a_gold_table_becomes_a_named_dbt_test() -> None:
    models = {m["name"]: m for m in yaml.safe_load(render())["models"]}
    hourly = {c["name"]: c for c in models["sales_hourly"]["columns"]}
    assert [next(iter(t)) for t in hourly["hour"]["data_tests"]] == ["not_null", "unique"]
    share = hourly["installment_share"]["data_tests"][1]["in_range"]
    assert share == {"name": "sales_hourly__installment_share__in_range", "arguments": {"minimum": 0, "maximum": 1}}
    category = {c["name"]: c for c in models["sales_by_category_daily"]["columns"]}["category"]
    allowed = category["data_tests"][1]["accepted_values"]["arguments"]["values"]
    assert allowed == load_contract("lakehouse").column("category", "sales_by_category_daily").custom["enum"]
    key = models["buyer_daily"]["data_tests"][0]["unique_key"]
    assert key["arguments"]["columns"] == ["day", "buyer_id"]
    # a composite key is not unique column by column
    assert all("unique" not in t for c in models["buyer_daily"]["columns"] for t in c.get("data_tests", []))
