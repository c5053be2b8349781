"""Reading and writing the file drop's Parquet tables in the lake (bronze and silver, per set).

Each set writes its own folder (``<layer>/filedrop/<table>/set_id=<set_id>/``), so a set is replaced
or re-run without touching the others; readers merge the sets, the latest set winning per key
(set ids sort by the time the set was formed).
"""

from __future__ import annotations

import io
import re

import pyarrow as arrow
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from cart_lakehouse.filedrop.layout import BRONZE, SILVER
from cart_lakehouse.lake import Lake

_SET_DIR = re.compile(r"/set_id=([^/]+)/")


def write_parquet(lake: Lake, relative: str, table: arrow.Table) -> str:
    """Write one Parquet file atomically (see ``Lake.write_bytes``); returns its URI."""
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return lake.write_bytes(relative, buffer.getvalue())


def set_files(lake: Lake, layer: str, table: str) -> dict[str, list[str]]:
    """The Parquet files of a layer's table, per set id (sorted by set id)."""
    root = {"bronze": BRONZE, "silver": SILVER}[layer]
    found: dict[str, list[str]] = {}
    for path in lake.files(f"{root}/{table}"):
        match = _SET_DIR.search(path)
        if match and path.endswith(".parquet"):
            found.setdefault(match[1], []).append(path)
    return dict(sorted(found.items()))


def read_sets(lake: Lake, layer: str, table: str, sets: list[str] | None = None) -> arrow.Table | None:
    """Every row of a layer's table (or of the given sets) with its ``set_id``; None when empty."""
    files = set_files(lake, layer, table)
    chosen = [f for set_id, paths in files.items() if sets is None or set_id in sets for f in paths]
    if not chosen:
        return None
    dataset = ds.dataset([lake.path(f) for f in chosen], filesystem=lake.fs, format="parquet", partitioning="hive")
    return dataset.to_table()


def known_ids(lake: Lake, table: str, column: str) -> set[str]:
    """The distinct values of ``column`` in silver's ``table`` across every loaded set."""
    files = [f for paths in set_files(lake, "silver", table).values() for f in paths]
    if not files:
        return set()
    dataset = ds.dataset([lake.path(f) for f in files], filesystem=lake.fs, format="parquet")
    values = pc.unique(dataset.to_table(columns=[column]).column(column))
    return {v for v in values.to_pylist() if v is not None}
