"""The products dimension: the committed CSV, each product replaced by the file drop's latest valid row."""

from __future__ import annotations

from pathlib import Path

import pyarrow as arrow
import pyarrow.parquet as pq
from dagster import materialize

from cart_lakehouse.assets.products import reference_products
from cart_lakehouse.checks.schemas import arrow_schema
from cart_lakehouse.filedrop.layout import silver_dir
from cart_lakehouse.filedrop.store import write_parquet
from cart_lakehouse.jobs.products import dimension, generate_products, products_table, render_csv
from cart_lakehouse.lake import Lake
from cart_lakehouse.layout import PRODUCTS_FILE
from cart_lakehouse.resources import LakeResource


def test_the_committed_csv_is_the_generators_output() -> None:
    assert render_csv(generate_products()) == (
        Path(__file__).resolve().parents[3] / "cart_lakehouse/data/products.csv"
    ).read_text(encoding="utf-8")


def _products(rows: list[dict[str, object]]) -> arrow.Table:
    schema = arrow_schema("products", contract="filedrop")
    return arrow.Table.from_pylist(rows, schema=arrow.schema([f.with_nullable(True) for f in schema])).cast(schema)


def _row(product_id: str, **changes: object) -> dict[str, object]:
    row: dict[str, object] = {
        "id": product_id,
        "sku": f"SKU-{product_id}",
        "cost": 10.0,
        "category": "books",
        "name": f"Dropped {product_id}",
        "brand": "Paperleaf",
        "retail_price": 19.99,
        "department": "hardlines",
    }
    return {**row, **changes}


def test_without_a_file_drop_the_dimension_is_the_committed_csv(tmp_path: Path) -> None:
    built = dimension(Lake.open(str(tmp_path)))
    assert built.table.equals(products_table())
    assert (built.from_csv, built.from_filedrop, built.unusable.num_rows) == (200, 0, 0)


def test_file_drop_products_replace_their_rows_latest_set_wins_and_bad_rows_are_shown(tmp_path: Path) -> None:
    lake = Lake.open(str(tmp_path))
    write_parquet(
        lake,
        f"{silver_dir('products', '20261101T000000Z-aaaaaaaa')}/data.parquet",
        _products([_row("P0001", name="Old name"), _row("P0300", category="toys", department="hardlines")]),
    )
    write_parquet(
        lake,
        f"{silver_dir('products', '20261102T000000Z-bbbbbbbb')}/data.parquet",
        _products([_row("P0001", name="New name"), _row("P0002", category=None), _row("P0301", retail_price=0.0)]),
    )
    built = dimension(lake)
    rows = {r["product_id"]: r for r in built.table.to_pylist()}
    assert rows["P0001"]["product_name"] == "New name"  # the later set wins
    assert rows["P0300"]["category"] == "toys"  # a product only the file drop describes
    # refused by the dimension's contract (category required, price > 0): P0002 keeps its CSV row,
    # P0301 is not in the dimension, and both are reported with the rule they break
    committed = {r["product_id"]: r for r in products_table().to_pylist()}
    assert rows["P0002"] == committed["P0002"]
    assert "P0301" not in rows
    unusable = dict(zip(built.unusable["product_id"].to_pylist(), built.unusable["reason"].to_pylist(), strict=True))
    assert set(unusable) == {"P0002", "P0301"}
    assert "category" in unusable["P0002"]
    assert "retail_price" in unusable["P0301"]
    assert (built.from_filedrop, built.from_csv, built.table.num_rows) == (2, 199, 201)
    assert built.table.schema.equals(arrow_schema("products"))


def test_a_refused_latest_row_gives_way_to_the_latest_valid_file_drop_row(tmp_path: Path) -> None:
    lake = Lake.open(str(tmp_path))
    write_parquet(
        lake,
        f"{silver_dir('products', '20261101T000000Z-aaaaaaaa')}/data.parquet",
        _products([_row("P0002", name="Valid drop"), _row("P0302", name="Valid new")]),
    )
    write_parquet(
        lake,
        f"{silver_dir('products', '20261102T000000Z-bbbbbbbb')}/data.parquet",
        _products([_row("P0002", category=None), _row("P0302", retail_price=0.0)]),
    )
    built = dimension(lake)
    rows = {r["product_id"]: r for r in built.table.to_pylist()}
    # the latest *valid* row: the first set's, not the committed CSV's, and not dropped
    assert rows["P0002"]["product_name"] == "Valid drop"
    assert rows["P0302"]["product_name"] == "Valid new"
    assert sorted(built.unusable["product_id"].to_pylist()) == ["P0002", "P0302"]  # still shown
    assert (built.from_filedrop, built.from_csv) == (2, 199)


def test_the_asset_writes_the_dimension_and_reports_its_sources(tmp_path: Path) -> None:
    lake = Lake.open(str(tmp_path))
    write_parquet(
        lake, f"{silver_dir('products', '20261101T000000Z-aaaaaaaa')}/data.parquet", _products([_row("P0005")])
    )
    result = materialize([reference_products], resources={"lake": LakeResource(root=str(tmp_path))})
    assert result.success
    metadata = result.asset_materializations_for_node("reference__products")[0].metadata
    assert metadata["from_filedrop"].value == 1
    assert metadata["from_committed_csv"].value == 199
    written = pq.read_table(lake.path(PRODUCTS_FILE))
    assert {r["product_id"]: r["product_name"] for r in written.to_pylist()}["P0005"] == "Dropped P0005"
