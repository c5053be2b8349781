"""Reference: the products dimension silver is enriched with.

The committed, seeded ``cart_lakehouse/data/products.csv`` is the first default; each product the
file drop has described (the latest valid row per id in ``silver/filedrop/products``) replaces its
row (see ``cart_lakehouse/jobs/products.py``). Written to ``reference/products/products.parquet``,
typed by the lakehouse contract. The CSV's hash is the asset's code version, so Dagster shows the
table as stale when the file changes; it depends on the file drop's products for the same reason.
"""

import hashlib
from typing import Any

import pyarrow.compute as pc
from dagster import AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue, asset

from cart_lakehouse.jobs.products import committed_csv, dimension, write_products
from cart_lakehouse.layout import PRODUCTS_TABLE
from cart_lakehouse.metadata import column_schema, preview
from cart_lakehouse.resources import LakeResource

OWNER = "team:cart-platform"


@asset(
    key=["reference", "products"],
    group_name="reference",
    owners=[OWNER],
    kinds={"csv", "parquet"},
    code_version=hashlib.sha256(committed_csv().encode()).hexdigest()[:12],
    deps=[AssetKey(["filedrop", "silver", "products"])],
    description=(
        "The products dimension (name, category, brand, department, retail price): the seeded "
        "cart_lakehouse/data/products.csv (P0001..P0200), each product replaced by the file drop's latest valid "
        "row for it, as reference/products/products.parquet."
    ),
    metadata={"contract": f"contracts/lakehouse.odcs.yaml#{PRODUCTS_TABLE}"},
)
def reference_products(context: AssetExecutionContext, lake: LakeResource) -> MaterializeResult[None]:
    the_lake = lake.lake()
    built = dimension(the_lake)
    table = built.table
    location = write_products(the_lake, table)
    context.log.info(
        f"products: {table.num_rows} rows ({built.from_filedrop} from the file drop, {built.from_csv} from the CSV) "
        f"→ {location}"
    )
    if built.unusable.num_rows:
        context.log.warning(f"{built.unusable.num_rows} file-drop products are not usable as dimension rows")
    per_category = {
        str(row["values"]): int(row["counts"]) for row in pc.value_counts(table.column("category")).to_pylist()
    }
    metadata: dict[str, Any] = {
        "dagster/row_count": table.num_rows,
        "dagster/column_schema": column_schema(PRODUCTS_TABLE),
        "location": MetadataValue.path(location),
        "from_filedrop": built.from_filedrop,
        "from_committed_csv": built.from_csv,
        "filedrop_products_unusable": built.unusable.num_rows,
        "categories": len(per_category),
        "products_per_category": MetadataValue.json(dict(sorted(per_category.items()))),
        "preview": preview(table, 10),
    }
    if built.unusable.num_rows:
        metadata["unusable_filedrop_products"] = preview(built.unusable, 20)
    return MaterializeResult(metadata=metadata)
