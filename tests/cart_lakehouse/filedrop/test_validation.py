"""Validating whole sets: every fault is rejected with exactly its rule, a valid set passes, the
report and the Markdown carry rule, rows and sample, force turns broken references into warnings."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cart_lakehouse.checks.schemas import arrow_schema
from cart_lakehouse.filedrop.csvfile import FILE_RULES, FileRejected, check_size
from cart_lakehouse.filedrop.layout import TABLES
from cart_lakehouse.filedrop.sample import FAULTS, SIZE_LIMIT_FAULT_BYTES, Files, generate_set, key
from cart_lakehouse.filedrop.validation import SetValidation, references, validate_set


@pytest.fixture(scope="module")
def valid() -> Files:
    return generate_set(seed=11, orders=150, days=2)


def validate(files: Files, **kwargs: Any) -> SetValidation:
    """``validate_set`` with nothing loaded before, unless said otherwise."""
    return validate_set(
        files,
        known_order_ids=kwargs.pop("known_order_ids", set()),
        known_product_ids=kwargs.pop("known_product_ids", set()),
        **kwargs,
    )


def test_a_valid_set_passes_with_its_tables_typed_by_the_contract(valid: Files) -> None:
    result = validate(valid, max_bytes=SIZE_LIMIT_FAULT_BYTES)
    assert result.passed, result.markdown()
    assert (result.failures, result.warnings, result.notes) == ([], [], [])
    assert set(result.bronze) == set(valid)
    assert result.rows["products"] == 200
    assert result.rows["orders"] == 150
    assert result.rows["order_items"] == result.tables["orders"].column("num_of_item").to_numpy().sum()
    for table in TABLES:
        assert result.tables[table].schema == arrow_schema(table, contract="filedrop")  # nullability too
        assert result.bronze[key(table, "drop")].num_rows == result.rows[table]
    assert result.report()["passed"] is True
    assert result.markdown().startswith("**Set valid**")


@pytest.mark.parametrize("rule", list(FAULTS))
def test_every_fault_is_rejected_with_exactly_its_rule(valid: Files, rule: str) -> None:
    result = validate(FAULTS[rule](valid), max_bytes=SIZE_LIMIT_FAULT_BYTES)
    assert not result.passed
    assert [f.rule for f in result.failures] == [rule], result.markdown()
    failure = result.failures[0]
    assert failure.files
    assert failure.detail
    if rule in FILE_RULES:
        assert failure.failed_rows is None  # the whole file
        assert failure.sample == []
    else:
        assert failure.failed_rows is not None
        assert 1 <= failure.failed_rows <= 2  # the broken row (and the row it duplicates)
        assert 1 <= len(failure.sample) <= 5
        assert {"_file", "_row"} <= set(failure.sample[0])
        assert failure.sample[0]["_file"] in failure.files
    report = json.loads(json.dumps(result.report()))  # JSON-able as it is
    assert report["passed"] is False
    assert [f["rule"] for f in report["failures"]] == [rule]
    assert report["failures"][0]["failed_rows"] == failure.failed_rows
    assert report["failures"][0]["sample"] == failure.sample
    markdown = result.markdown()
    assert f"`{rule}`" in markdown
    assert "Set rejected: 1 rule(s) broken" in markdown


def test_the_report_and_markdown_show_the_failing_rows_as_received(valid: Files) -> None:
    broken = FAULTS["orders.num_of_item: integer"](valid)
    result = validate(broken)
    failure = result.failures[0]
    assert failure.table == "orders"
    assert failure.files == [key("orders", "drop")]
    assert failure.sample[0]["_row"] == 1
    assert failure.sample[0]["num_of_item"] == "2.5"  # the string received, not a cast
    assert "'2.5'" in failure.detail
    assert "| 1 | O11-0000001 |" in result.markdown()
    assert result.failed_rows["orders"] == 1
    assert result.report()["files"][1] == {
        "key": key("orders", "drop"),
        "table": "orders",
        "bytes": len(broken[key("orders", "drop")]),
        "rows": 150,
        "status": "read",
    }


def test_a_set_breaking_several_rules_lists_them_all(valid: Files) -> None:
    broken = FAULTS["products.category: enum"](FAULTS["orders.status: enum"](FAULTS["duplicated columns"](valid)))
    broken["landing/orders/second.csv"] = b""
    result = validate(broken)
    assert sorted(f.rule for f in result.failures) == [
        "duplicated columns",
        "empty file",
        "orders.status: enum",
        "products.category: enum",
    ]
    # the order items could not be read: their references are not checked, and the report says so
    assert any("order_items.order_id -> orders.order_id` not checked" in n for n in result.notes)
    assert "not checked" in result.markdown()
    assert set(result.bronze) == {key("orders", "drop"), key("products", "drop")}  # what could be read


def test_several_files_of_a_table_are_validated_together(valid: Files) -> None:
    files = dict(valid)
    files["landing/orders/again.csv"] = valid[key("orders", "drop")]
    result = validate(files)
    assert [f.rule for f in result.failures] == ["orders.order_id: unique"]
    failure = result.failures[0]
    assert failure.failed_rows == 300
    assert failure.files == ["landing/orders/again.csv", key("orders", "drop")]
    assert "300 rows share 150 value(s) of order_id" in failure.detail


def test_a_cell_that_does_not_cast_is_not_also_reported_as_missing(valid: Files) -> None:
    result = validate(FAULTS["orders.created_at: timestamp"](valid))
    assert [f.rule for f in result.failures] == ["orders.created_at: timestamp"]  # not 'required' too


def test_a_file_refused_for_its_size_before_reading_is_in_the_report(valid: Files) -> None:
    orders = key("orders", "drop")
    with pytest.raises(FileRejected) as too_big:
        check_size(orders, 10_000_000, 1_000_000)
    files = {k: v for k, v in valid.items() if k != orders}
    result = validate(files, rejected=[too_big.value])
    assert [(f.rule, f.files) for f in result.failures] == [("size limit", [orders])]
    assert result.files[orders] == {
        "table": "orders",
        "bytes": 10_000_000,
        "rows": None,
        "status": "rejected: size limit",
    }
    assert "10,000,000" in result.markdown()


def test_references_may_point_at_ids_loaded_before(valid: Files) -> None:
    items_only = {key("order_items", "drop"): valid[key("order_items", "drop")]}
    loaded = validate(valid)
    order_ids = set(loaded.tables["orders"].column("order_id").to_pylist())
    product_ids = set(loaded.tables["products"].column("id").to_pylist())

    alone = validate(items_only)
    assert [f.rule for f in alone.failures] == [r.rule for r in references()]
    assert alone.failures[0].failed_rows == loaded.rows["order_items"]
    assert "neither in this set nor loaded before" in alone.failures[0].detail

    late = validate(items_only, known_order_ids=order_ids, known_product_ids=product_ids)
    assert late.passed, late.markdown()


def test_force_turns_broken_references_into_warnings(valid: Files) -> None:
    broken = FAULTS["order_items.product_id -> products.id"](FAULTS["order_items.order_id -> orders.order_id"](valid))
    assert [f.rule for f in validate(broken).failures] == [r.rule for r in references()]

    forced = validate(broken, force=True)
    assert forced.passed
    assert forced.failures == []
    assert [w.rule for w in forced.warnings] == [r.rule for r in references()]
    assert forced.warnings[0].sample[0]["order_id"] == "O-NOT-IN-THE-SET"
    assert "Warnings (forced through)" in forced.markdown()
    assert forced.report()["warnings"][1]["rule"] == "order_items.product_id -> products.id"


def test_force_does_not_let_other_rules_through(valid: Files) -> None:
    result = validate(FAULTS["orders.status: enum"](valid), force=True)
    assert not result.passed
    assert [f.rule for f in result.failures] == ["orders.status: enum"]


def test_the_references_are_the_contracts_relationships() -> None:
    assert [r.rule for r in references()] == [
        "order_items.order_id -> orders.order_id",
        "order_items.product_id -> products.id",
    ]
