import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as arrow
import pyarrow.parquet as pq

from cart_lakehouse.checks.reconciliation import count_hour, purchase_ids
from cart_lakehouse.lake import Lake
from cart_lakehouse.layout import SILVER, SILVER_QUARANTINE, bronze_file
from cart_lakehouse.partitions import Hour

HOUR = Hour(datetime(2026, 11, 20, 9, tzinfo=UTC))


def line(purchase_id: object, amount: str = "10.00") -> str:
    return json.dumps({"purchase_id": purchase_id, "total_amount": amount}, sort_keys=True)


def test_purchase_ids_reads_every_line_in_one_pass_or_line_by_line_when_one_is_odd() -> None:
    valid = [line("a"), line("b"), json.dumps({"total_amount": "1"})]
    assert purchase_ids(valid) == ["a", "b", None]
    # a line that is not an object, or whose id is not a string: each line still gets its own answer
    odd = [line("a"), "[1, 2]", line(7), "{not json", line("b")]
    assert purchase_ids(odd) == ["a", None, None, None, "b"]
    assert purchase_ids([]) == []


def write_table(lake: Lake, location: str, column: str, values: list[str]) -> None:
    folder = Path(lake.path(f"{location}/{HOUR.path}"))
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(arrow.table({column: values}), folder / "part-0.parquet")


def test_every_bronze_line_is_accounted_for_and_a_missing_silver_row_is_not(tmp_path: Path) -> None:
    lake = Lake.open(str(tmp_path))
    broken = "{not json"
    lines = [line("a"), line("a"), line("b", "11.00"), line("b", "12.00"), line("c"), broken]
    lake.write_bytes(bronze_file(HOUR), "".join(f"{x}\n" for x in lines).encode())
    write_table(lake, SILVER_QUARANTINE, "raw", [broken])
    write_table(lake, SILVER, "purchase_id", ["a", "b", "c"])

    counts = count_hour(lake, HOUR)
    # a and b each have an older copy: an identical line and a different line of the same id
    assert (counts.bronze, counts.silver, counts.quarantined, counts.superseded) == (6, 3, 1, 2)
    assert counts.unaccounted == 0

    write_table(lake, SILVER, "purchase_id", ["a", "b"])  # silver lost c
    assert count_hour(lake, HOUR).unaccounted == 1
