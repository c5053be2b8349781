"""The products dimension: seeded reference data for P0001..P0200, committed as a CSV, typed by the
contract, overridden product by product by the file drop's products (``dimension``).

``generate_products()`` is deterministic (a fixed seed, stable ``random`` calls), so the committed
``cart_lakehouse/data/products.csv`` is its output and a test proves it. Regenerate the file with
``uv run python -m cart_lakehouse.jobs.products``.
"""

from __future__ import annotations

import csv
import io
import random
from dataclasses import asdict, dataclass
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import pyarrow as arrow
import pyarrow.compute as pc
import pyarrow.csv as arrow_csv
import pyarrow.parquet as pq

from cart_lakehouse.checks.schemas import arrow_schema, failing_rows
from cart_lakehouse.filedrop.store import read_sets
from cart_lakehouse.lake import Lake
from cart_lakehouse.layout import PRODUCTS_FILE, PRODUCTS_TABLE
from contracts import load_contract

PRODUCT_IDS = tuple(f"P{n:04d}" for n in range(1, 201))  # the ids the traffic generator buys
SEED = 20261125


class _Category(NamedTuple):
    department: str
    brands: tuple[str, ...]  # fictional
    nouns: tuple[str, ...]
    cents: tuple[int, int]  # the price range


_CATALOGUE = {
    "electronics": _Category(
        "hardlines",
        ("Voltix", "Northwave", "Pixelon"),
        ("Headphones", "Speaker", "Charger", "Tablet", "Camera"),
        (1_990, 249_990),
    ),
    "home": _Category(
        "hardlines",
        ("Casa Bella", "Hearthly", "Nordhem"),
        ("Lamp", "Rug", "Kettle", "Blender", "Pillow"),
        (990, 89_990),
    ),
    "fashion": _Category(
        "softlines", ("Urbano", "Linea", "Mira"), ("Jacket", "Sneakers", "Scarf", "Dress", "Backpack"), (1_490, 59_990)
    ),
    "beauty": _Category(
        "consumables", ("Glowa", "Purelle", "Velvy"), ("Serum", "Lipstick", "Shampoo", "Perfume"), (590, 29_990)
    ),
    "sports": _Category(
        "hardlines",
        ("Stride", "Peakline", "Aqualis"),
        ("Yoga Mat", "Dumbbell", "Bicycle Helmet", "Racket"),
        (1_290, 149_990),
    ),
    "toys": _Category(
        "hardlines",
        ("Brickle", "Tiny Town", "Wonderly"),
        ("Puzzle", "Robot Kit", "Plush Bear", "Board Game"),
        (790, 39_990),
    ),
    "books": _Category(
        "hardlines", ("Paperleaf", "Inkwell Press"), ("Novel", "Cookbook", "Atlas", "Comic Anthology"), (690, 14_990)
    ),
    "grocery": _Category(
        "consumables",
        ("Fazenda", "Green Basket", "Dolce Vita"),
        ("Coffee", "Olive Oil", "Granola", "Tea Box"),
        (290, 9_990),
    ),
}
_ADJECTIVES = ("Classic", "Pro", "Mini", "Essential", "Deluxe", "Eco", "Smart", "Compact", "Premium", "Everyday")
_CENT = Decimal("0.01")


@dataclass(frozen=True)
class Product:
    product_id: str
    product_name: str
    category: str
    brand: str
    department: str
    retail_price: Decimal


def generate_products(seed: int = SEED) -> list[Product]:
    """The products dimension, the same on every machine and Python version for a given seed."""
    categories = list(load_contract("lakehouse").column("category", PRODUCTS_TABLE).custom["enum"])
    if sorted(categories) != sorted(_CATALOGUE):
        raise ValueError(f"the catalogue's categories {sorted(_CATALOGUE)} differ from the contract's {categories}")
    rng = random.Random(seed)
    products = []
    for product_id in PRODUCT_IDS:
        category = categories[rng.randrange(len(categories))]
        department, brands, nouns, (low, high) = _CATALOGUE[category]
        brand = brands[rng.randrange(len(brands))]
        name = f"{brand} {_ADJECTIVES[rng.randrange(len(_ADJECTIVES))]} {nouns[rng.randrange(len(nouns))]}"
        price = (Decimal(rng.randrange(low, high + 1)) * _CENT).quantize(_CENT)
        products.append(Product(product_id, name, category, brand, department, price))
    return products


def render_csv(products: list[Product]) -> str:
    """The CSV text of the products (header from the contract's column order, ``\\n`` line ends)."""
    columns = [c.name for c in load_contract("lakehouse").columns(PRODUCTS_TABLE)]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for product in products:
        writer.writerow({k: str(v) for k, v in asdict(product).items()})
    return out.getvalue()


def committed_csv() -> str:
    """The committed ``cart_lakehouse/data/products.csv``."""
    return resources.files("cart_lakehouse").joinpath("data/products.csv").read_text(encoding="utf-8")


def products_table(text: str | None = None) -> arrow.Table:
    """The products CSV (the committed one by default) as an Arrow table typed by the contract."""
    schema = arrow_schema(PRODUCTS_TABLE)
    table = arrow_csv.read_csv(
        io.BytesIO((committed_csv() if text is None else text).encode()),
        convert_options=arrow_csv.ConvertOptions(column_types=schema, strings_can_be_null=False),
    )
    return table.select(schema.names).cast(schema)


# the file drop's products columns -> the dimension's (contracts/filedrop.odcs.yaml#products ->
# contracts/lakehouse.odcs.yaml#products)
FILEDROP_COLUMNS = {
    "id": "product_id",
    "name": "product_name",
    "category": "category",
    "brand": "brand",
    "department": "department",
    "retail_price": "retail_price",
}


@dataclass(frozen=True)
class Dimension:
    """The products dimension and where its rows came from."""

    table: arrow.Table
    from_csv: int
    from_filedrop: int
    unusable: arrow.Table  # file-drop products the dimension's contract refuses, with the reason


def dimension(lake: Lake) -> Dimension:
    """The committed CSV's products, each replaced by the latest valid file-drop row for its id.

    A file-drop row the lakehouse's products contract refuses (no category, a price of 0, ...) is
    not used: the id's latest row that the contract accepts is (an earlier set's), else the
    committed row (if any), else purchases of it are enriched as 'unknown'. Every id whose latest
    row is refused is returned in ``unusable`` with the reasons, so the asset shows it.
    """
    base = products_table()
    dropped = read_sets(lake, "silver", "products")
    if dropped is None or dropped.num_rows == 0:
        return Dimension(base, base.num_rows, 0, _unusable([], []))
    # newest set first (set ids sort by the time the set was formed); ids are unique within a set
    frame = dropped.to_pandas().sort_values("set_id", ascending=False, kind="stable")
    frame = frame[list(FILEDROP_COLUMNS)].rename(columns=FILEDROP_COLUMNS).reset_index(drop=True)
    frame["retail_price"] = [
        None if pd.isna(v) else Decimal(str(v)).quantize(_CENT) for v in frame["retail_price"].tolist()
    ]
    refused: dict[str, str] = {}  # id -> why its latest row is refused
    while True:  # the latest remaining row per id; a refused one gives way to the one before it
        latest = frame.drop_duplicates("product_id", keep="first")
        failures = failing_rows(latest, PRODUCTS_TABLE)  # positions in ``latest``
        if not failures:
            break
        for position, rules in failures.items():
            refused.setdefault(str(latest["product_id"].iloc[position]), "; ".join(rules))
        frame = frame.drop(index=latest.index[list(failures)])
    schema = arrow_schema(PRODUCTS_TABLE)
    usable = arrow.Table.from_pandas(latest[schema.names].reset_index(drop=True), schema=schema, preserve_index=False)
    kept = base.filter(pc.invert(pc.is_in(base["product_id"], usable["product_id"])))
    table = arrow.concat_tables([kept, usable]).sort_by("product_id")
    return Dimension(table, kept.num_rows, usable.num_rows, _unusable(list(refused), list(refused.values())))


def _unusable(ids: list[str], reasons: list[str]) -> arrow.Table:
    return arrow.table({"product_id": arrow.array(ids, arrow.string()), "reason": arrow.array(reasons, arrow.string())})


def write_products(lake: Lake, table: arrow.Table) -> str:
    """Write the products as one Parquet file, replaced atomically; returns its location."""
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return lake.write_bytes(PRODUCTS_FILE, buffer.getvalue())


def main() -> None:
    """Regenerate the committed CSV (only needed when the generator or the contract changes)."""
    target = Path(__file__).resolve().parent.parent / "data" / "products.csv"
    target.write_text(render_csv(generate_products()), encoding="utf-8")
    print(f"wrote {len(PRODUCT_IDS)} products to {target}")


if __name__ == "__main__":
    main()
