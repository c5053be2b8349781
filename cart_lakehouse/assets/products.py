"""Reference: the products dimension silver is enriched with, from the committed, seeded CSV.

``cart_lakehouse/data/products.csv`` (see ``cart_lakehouse/jobs/products.py``) is written to
``reference/products/products.parquet``, typed by the lakehouse contract. The CSV's hash is the
asset's code version, so Dagster shows the table as stale when the file changes.
"""

import hashlib
from typing import Any

import pyarrow.compute as pc
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from cart_lakehouse.jobs.products import PRODUCTS_TABLE, committed_csv, products_table, write_products
from cart_lakehouse.metadata import column_schema, preview
from cart_lakehouse.resources import LakeResource

OWNER = "team:cart-platform"


@asset(
    key=["reference", "products"],
    group_name="reference",
    owners=[OWNER],
    kinds={"csv", "parquet"},
    code_version=hashlib.sha256(committed_csv().encode()).hexdigest()[:12],
    description=(
        "The products dimension (P0001..P0200: name, category, brand, department, retail price), "
        "seeded reference data from cart_lakehouse/data/products.csv, as reference/products/products.parquet."
    ),
    metadata={"contract": f"contracts/lakehouse.odcs.yaml#{PRODUCTS_TABLE}"},
)
def reference_products(context: AssetExecutionContext, lake: LakeResource) -> MaterializeResult[None]:
    table = products_table()
    location = write_products(lake.lake(), table)
    context.log.info(f"products: {table.num_rows} rows → {location}")
    per_category = {
        str(row["values"]): int(row["counts"]) for row in pc.value_counts(table.column("category")).to_pylist()
    }
    metadata: dict[str, Any] = {
        "dagster/row_count": table.num_rows,
        "dagster/column_schema": column_schema(PRODUCTS_TABLE),
        "location": MetadataValue.path(location),
        "categories": len(per_category),
        "products_per_category": MetadataValue.json(dict(sorted(per_category.items()))),
        "preview": preview(table, 10),
    }
    return MaterializeResult(metadata=metadata)
