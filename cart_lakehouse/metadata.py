"""Asset metadata shared by every layer: column schemas from the contracts and table previews."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pyarrow as arrow
from dagster import MetadataValue, TableColumn, TableColumnConstraints, TableSchema

from contracts import load_contract


def column_schema(table: str, contract: str = "lakehouse") -> TableSchema:
    """The table's columns as the contract declares them (shown by Dagster as the column schema)."""
    doc = load_contract(contract)
    key = doc.primary_key(table)
    return TableSchema(
        columns=[
            TableColumn(
                name=c.name,
                type=c.physical_type,
                description=c.description or None,
                constraints=TableColumnConstraints(nullable=not c.required, unique=key == (c.name,)),
            )
            for c in doc.columns(table)
        ],
    )


def markdown_table(data: pd.DataFrame | arrow.Table, limit: int = 10) -> str:
    """A small markdown preview of the first rows."""
    frame = data.slice(0, limit).to_pandas() if isinstance(data, arrow.Table) else data.head(limit)
    if frame.empty:
        return "(no rows)"
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def preview(data: pd.DataFrame | arrow.Table, limit: int = 10) -> Any:
    return MetadataValue.md(markdown_table(data, limit))


def _cell(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value).replace("|", "\\|")
