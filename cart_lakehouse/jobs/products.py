"""The products dimension: seeded reference data for P0001..P0200, committed as a CSV, typed by the contract.

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

import pyarrow as arrow
import pyarrow.csv as arrow_csv
import pyarrow.parquet as pq

from cart_lakehouse.checks.schemas import arrow_schema
from cart_lakehouse.lake import Lake
from cart_lakehouse.layout import PRODUCTS_FILE
from contracts import load_contract

PRODUCTS_TABLE = "products"  # the schema object in the lakehouse contract
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
