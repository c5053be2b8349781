"""The sample sets: seeded, realistic, consistent, valid; and a fault for every rule the contract
states (the list of faults is checked against the contract, not against itself)."""

from __future__ import annotations

from collections import Counter
from datetime import date

import pyarrow as arrow
import pyarrow.compute as pc
import pytest

from cart_lakehouse.filedrop.csvfile import FILE_RULES
from cart_lakehouse.filedrop.layout import TABLES
from cart_lakehouse.filedrop.sample import FAULTS, Files, generate_set, key, late_items
from cart_lakehouse.filedrop.validation import SetValidation, references, validate_set
from cart_lakehouse.jobs.products import products_table
from contracts import load_contract


def validate(files: Files, **known: set[str]) -> SetValidation:
    return validate_set(
        files,
        known_order_ids=known.get("orders", set()),
        known_product_ids=known.get("products", set()),
    )


@pytest.fixture(scope="module")
def valid() -> Files:
    return generate_set(seed=3, orders=2000, start=date(2026, 10, 1), days=4)


@pytest.fixture(scope="module")
def tables(valid: Files) -> dict[str, arrow.Table]:
    result = validate(valid)
    assert result.passed, result.markdown()
    return result.tables


def test_the_same_seed_gives_the_same_bytes_and_another_seed_other_orders() -> None:
    assert generate_set(seed=5, orders=300) == generate_set(seed=5, orders=300)
    other = generate_set(seed=6, orders=300)
    assert other[key("orders", "drop")] != generate_set(seed=5, orders=300)[key("orders", "drop")]
    assert other[key("orders", "drop")].split(b"\n")[1].startswith(b"O6-0000001,")
    # the products are the catalogue whatever the seed: sets never disagree on a product
    assert other[key("products", "drop")] == generate_set(seed=5, orders=300)[key("products", "drop")]


def test_the_keys_are_the_landing_prefixes_and_the_name() -> None:
    assert list(generate_set(orders=10, name="monday")) == [f"landing/{t}/monday.csv" for t in TABLES]


def test_the_valid_set_validates_and_has_every_order(valid: Files, tables: dict[str, arrow.Table]) -> None:
    assert tables["orders"].num_rows == 2000
    assert set(pc.unique(tables["order_items"]["order_id"]).to_pylist()) == set(
        tables["orders"]["order_id"].to_pylist()
    )


def test_one_to_four_items_per_order_and_num_of_item_counts_them(tables: dict[str, arrow.Table]) -> None:
    counted = Counter(tables["order_items"]["order_id"].to_pylist())
    declared = dict(
        zip(tables["orders"]["order_id"].to_pylist(), tables["orders"]["num_of_item"].to_pylist(), strict=True)
    )
    assert counted == declared
    assert set(counted.values()) == {1, 2, 3, 4}


def test_a_realistic_mix_of_statuses(tables: dict[str, arrow.Table]) -> None:
    share = {s: n / 2000 for s, n in Counter(tables["orders"]["status"].to_pylist()).items()}
    assert set(share) == {"pending", "processing", "shipped", "delivered", "cancelled", "returned"}
    assert share["delivered"] + share["shipped"] > 0.55  # mostly delivered or shipped
    assert 0.03 < share["cancelled"] < 0.2
    assert 0.03 < share["returned"] < 0.2


def test_timestamps_are_consistent(tables: dict[str, arrow.Table]) -> None:
    for name in ("orders", "order_items"):
        rows = tables[name].to_pylist()
        for row in rows:
            if row["shipped_at"] is not None:
                assert row["shipped_at"] > row["created_at"]
            if row["delivered_at"] is not None:
                assert row["shipped_at"] is not None
                assert row["delivered_at"] > row["shipped_at"]
            if row["returned_at"] is not None:
                assert row["delivered_at"] is not None
                assert row["returned_at"] > row["delivered_at"]
            status = row["status"]
            assert (row["shipped_at"] is not None) == (status in ("shipped", "delivered", "returned"))
            assert (row["returned_at"] is not None) == (status == "returned")
        days = {r["created_at"].date() for r in rows}
        assert days == {date(2026, 10, d) for d in range(1, 5)}


def test_items_take_their_orders_status_but_a_few_come_back_alone(tables: dict[str, arrow.Table]) -> None:
    status = dict(zip(tables["orders"]["order_id"].to_pylist(), tables["orders"]["status"].to_pylist(), strict=True))
    pairs = Counter(
        (status[o], s)
        for o, s in zip(
            tables["order_items"]["order_id"].to_pylist(), tables["order_items"]["status"].to_pylist(), strict=True
        )
    )
    assert {(o, i) for o, i in pairs if o != i} == {("delivered", "returned")}  # partial returns only
    assert pairs[("delivered", "returned")] < 0.1 * pairs[("delivered", "delivered")]


def test_products_are_the_catalogue(tables: dict[str, arrow.Table]) -> None:
    catalogue = products_table()
    products = tables["products"]
    assert products["id"].to_pylist() == catalogue["product_id"].to_pylist()
    assert products["name"].to_pylist() == catalogue["product_name"].to_pylist()
    for column in ("category", "brand", "department"):
        assert products[column].to_pylist() == catalogue[column].to_pylist()
    assert products["retail_price"].to_pylist() == [float(p) for p in catalogue["retail_price"].to_pylist()]
    assert all(
        0 < c < r for c, r in zip(products["cost"].to_pylist(), products["retail_price"].to_pylist(), strict=True)
    )
    prices = dict(zip(products["id"].to_pylist(), products["retail_price"].to_pylist(), strict=True))
    for product, price in zip(
        tables["order_items"]["product_id"].to_pylist(), tables["order_items"]["sale_price"].to_pylist(), strict=True
    ):
        assert 0.69 * prices[product] <= price <= prices[product] + 0.005  # discounts only


def test_a_set_without_products_and_an_items_only_set() -> None:
    full = generate_set(seed=4, orders=200)
    without = generate_set(seed=4, orders=200, tables=("orders", "order_items"))
    assert without == {k: v for k, v in full.items() if "products" not in k}
    items = generate_set(seed=4, orders=200, tables=("order_items",))
    assert items == {key("order_items", "drop"): full[key("order_items", "drop")]}
    catalogue = set(products_table()["product_id"].to_pylist())
    assert validate(without, products=catalogue).passed


def test_items_at_scale_come_exactly_and_fast() -> None:
    files = generate_set(seed=2, items=100_000, tables=("orders", "order_items"))
    items = files[key("order_items", "drop")]
    assert items.count(b"\n") == 100_001  # header and rows
    catalogue = set(products_table()["product_id"].to_pylist())
    result = validate(files, products=catalogue)
    assert result.passed, result.markdown()
    assert result.rows["order_items"] == 100_000


def test_a_late_items_file_returns_items_of_one_day_only() -> None:
    base = generate_set(seed=9, orders=500, start=date(2026, 10, 1), days=3)
    late = late_items(seed=9, orders=500, start=date(2026, 10, 1), days=3, day=1)
    assert list(late) == [key("order_items", "late")]
    loaded = validate(base)
    result = validate(
        late,
        orders=set(loaded.tables["orders"]["order_id"].to_pylist()),
        products=set(loaded.tables["products"]["id"].to_pylist()),
    )
    assert result.passed, result.markdown()
    rows = result.tables["order_items"].to_pylist()
    assert len(rows) > 10
    assert {r["created_at"].date() for r in rows} == {date(2026, 10, 2)}
    assert {r["status"] for r in rows} == {"returned"}
    before = {(r["order_id"], r["product_id"]): r for r in loaded.tables["order_items"].to_pylist()}
    for r in rows:  # the same items, now returned after their delivery
        assert before[(r["order_id"], r["product_id"])]["status"] == "delivered"
        assert r["returned_at"] > r["delivered_at"]


def test_there_is_a_fault_for_every_rule_the_contract_states() -> None:
    contract = load_contract("filedrop")
    expected = set(FILE_RULES)
    for table in TABLES:
        columns = contract.columns(table)
        expected |= {f"{table}.{c.name}: required" for c in columns if c.required}
        key_columns = contract.primary_key(table)
        expected.add(
            f"{table}.{key_columns[0]}: unique"
            if len(key_columns) == 1
            else f"{table}.({', '.join(key_columns)}): unique"
        )
        expected |= {f"{table}.{c.name}: minimum {c.options['minimum']}" for c in columns if "minimum" in c.options}
        expected |= {f"{table}.{c.name}: enum" for c in columns if c.name == "status"}
        expected |= {f"{table}.{c.name}: integer" for c in columns if c.logical_type == "integer"}
    expected |= {r.rule for r in references()}
    missing = expected - set(FAULTS)
    assert not missing
