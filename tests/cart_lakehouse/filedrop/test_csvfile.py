"""Reading one landed CSV by the contract's file rules, and typing it: every rule, through the
public functions, on bytes as a producer would drop them."""

from __future__ import annotations

import codecs
import csv
import gzip
import io
from datetime import UTC, datetime

import pyarrow as arrow
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cart_lakehouse.checks.schemas import arrow_schema
from cart_lakehouse.filedrop.csvfile import (
    FILE_RULES,
    FileRejected,
    check_size,
    read_landed,
    table_for,
    typed,
)
from contracts import load_contract

ORDERS = "landing/orders/o.csv"
HEADER = "order_id,user_id,status,created_at,returned_at,shipped_at,delivered_at,num_of_item"
ROW = "O1,U1,delivered,2026-11-01T10:00:00Z,,2026-11-01T12:00:00Z,2026-11-02T09:00:00Z,2"
COLUMNS = [c.name for c in load_contract("filedrop").columns("orders")]


def rejected(key: str, data: bytes) -> FileRejected:
    with pytest.raises(FileRejected) as caught:
        read_landed(key, data)
    return caught.value


def orders(*rows: str, header: str = HEADER, end: str = "\n") -> bytes:
    return end.join([header, *rows, ""]).encode()


def test_a_valid_file_reads_as_strings_in_the_headers_order_with_empty_cells_null() -> None:
    landed = read_landed(ORDERS, orders(ROW, "O2,U2,pending,2026-11-01 08:00:00,,,,1"))
    assert landed.table == "orders"
    assert landed.rows == 2
    assert landed.raw.column_names == COLUMNS
    assert all(arrow.types.is_string(t) for t in landed.raw.schema.types)
    assert landed.raw.to_pylist()[1] == dict(
        zip(COLUMNS, ["O2", "U2", "pending", "2026-11-01 08:00:00", None, None, None, "1"], strict=True)
    )


def test_columns_may_come_in_any_order() -> None:
    header = ",".join(reversed(HEADER.split(",")))
    row = ",".join(reversed(ROW.split(",")))
    landed = read_landed(ORDERS, orders(row, header=header))
    assert landed.raw.column_names == list(reversed(COLUMNS))
    assert landed.raw.column("order_id").to_pylist() == ["O1"]


def test_a_utf8_byte_order_mark_crlf_line_ends_and_quoted_values_are_fine() -> None:
    data = codecs.BOM_UTF8 + orders(ROW, 'O2,"U, ""2""\nsecond line",pending,2026-11-01T08:00:00Z,,,,1', end="\r\n")
    landed = read_landed(ORDERS, data)
    assert landed.raw.column("order_id").to_pylist() == ["O1", "O2"]
    assert landed.raw.column("user_id").to_pylist()[1] == 'U, "2"\nsecond line'
    assert landed.raw.column("num_of_item").to_pylist() == ["2", "1"]  # the CR is not part of the last cell


@pytest.mark.parametrize(
    "key",
    [
        "landing/customers/c.csv",  # another table
        "landing/orders/o.txt",  # another format
        "landing/orders/2026/o.csv",  # not directly under the prefix
        "orders/o.csv",  # not under landing/
        "landing/orders/",  # a folder marker
    ],
)
def test_a_key_that_is_not_a_file_of_the_drop_is_an_unknown_file(key: str) -> None:
    with pytest.raises(FileRejected) as caught:
        table_for(key)
    assert caught.value.rule == "unknown file"
    assert "landing/orders/<name>.csv" in caught.value.detail
    assert rejected(key, orders(ROW)).rule == "unknown file"


def test_the_size_limit_is_checked_from_the_size_alone() -> None:
    check_size(ORDERS, 1000, 1000)  # at the limit: fine
    with pytest.raises(FileRejected) as caught:
        check_size(ORDERS, 1001, 1000)
    assert caught.value.rule == "size limit"
    assert caught.value.size == 1001
    assert "1,001 bytes" in caught.value.detail
    assert "1,000" in caught.value.detail


@pytest.mark.parametrize(("data", "says"), [(b"", "no content"), (b" \n\t\r\n", "whitespace"), (codecs.BOM_UTF8, "no")])
def test_an_empty_file(data: bytes, says: str) -> None:
    problem = rejected(ORDERS, data)
    assert problem.rule == "empty file"
    assert says in problem.detail


def test_latin1_is_an_encoding_problem_with_its_line() -> None:
    data = orders(ROW, "O2,Zoë,pending,2026-11-01T08:00:00Z,,,,1").decode().encode("latin-1")
    problem = rejected(ORDERS, data)
    assert problem.rule == "encoding"
    assert "line 3" in problem.detail
    assert "0xeb" in problem.detail


def test_a_latin1_header_is_an_encoding_problem_too() -> None:
    problem = rejected(ORDERS, ("ordér_id" + HEADER[8:] + "\n" + ROW + "\n").encode("latin-1"))
    assert problem.rule == "encoding"
    assert "line 1" in problem.detail


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-32"])
def test_utf16_and_utf32_are_encoding_problems(codec: str) -> None:
    problem = rejected(ORDERS, orders(ROW).decode().encode(codec))
    assert problem.rule == "encoding"
    assert "UTF-8" in problem.detail


def test_a_gzipped_file_is_not_a_csv() -> None:
    problem = rejected(ORDERS, gzip.compress(orders(ROW), mtime=0))
    assert problem.rule == "not a csv"
    assert "gzip" in problem.detail


def test_nul_bytes_are_not_a_csv() -> None:
    problem = rejected(ORDERS, orders(ROW, "O2,U2\x00,pending,2026-11-01T08:00:00Z,,,,1"))
    assert problem.rule == "not a csv"
    assert "line 3" in problem.detail


def test_rows_with_another_field_count_are_not_a_csv_naming_the_first() -> None:
    data = orders(ROW, ROW.replace("O1", "O2"), "O3,U3,pending", ROW.replace("O1", "O4") + ",extra")
    problem = rejected(ORDERS, data)
    assert problem.rule == "not a csv"
    assert "2 rows" in problem.detail
    assert "line 4 has 3" in problem.detail


def test_an_unterminated_quote_is_not_a_csv() -> None:
    problem = rejected(ORDERS, orders(ROW, 'O2,"U2,pending,2026-11-01T08:00:00Z,,,,1'))
    assert problem.rule == "not a csv"


@pytest.mark.parametrize(("delimiter", "named"), [(";", "';'"), ("\t", "tab"), ("|", "'|'")])
def test_another_delimiter_is_named(delimiter: str, named: str) -> None:
    data = orders(ROW.replace(",", delimiter), header=HEADER.replace(",", delimiter))
    problem = rejected(ORDERS, data)
    assert problem.rule == "delimiter"
    assert named in problem.detail
    assert "','" in problem.detail


def test_a_header_and_no_rows() -> None:
    assert rejected(ORDERS, orders()).rule == "header only"
    assert rejected(ORDERS, HEADER.encode()).rule == "header only"  # no line end at all
    assert rejected(ORDERS, orders("", "")).rule == "header only"  # blank lines are not rows
    assert rejected(ORDERS, orders("  ", "\t")).rule == "header only"  # nor lines of spaces


def test_missing_unexpected_and_duplicated_columns_are_each_named() -> None:
    missing = rejected(ORDERS, orders("O1,U1", header="order_id,user_id"))
    assert missing.rule == "missing columns"
    assert "status" in missing.detail
    assert "num_of_item" in missing.detail
    assert not missing.related

    unexpected = rejected(ORDERS, orders(ROW + ",F", header=HEADER + ",gender"))
    assert (unexpected.rule, unexpected.related) == ("unexpected columns", ())
    assert "gender" in unexpected.detail

    duplicated = rejected(ORDERS, orders(ROW + ",x", header=HEADER + ",status"))
    assert duplicated.rule == "duplicated columns"
    assert "status" in duplicated.detail


def test_a_renamed_column_is_both_missing_and_unexpected() -> None:
    problem = rejected(ORDERS, orders(ROW, header=HEADER.replace("user_id", "customer_id")))
    assert [(p.rule, p.key) for p in problem.all()] == [("missing columns", ORDERS), ("unexpected columns", ORDERS)]
    assert "user_id" in problem.all()[0].detail
    assert "customer_id" in problem.all()[1].detail


def test_every_rule_has_its_name() -> None:
    with pytest.raises(ValueError, match="unknown file rule"):
        FileRejected("typo", "", ORDERS)
    assert len(set(FILE_RULES)) == 10


# ---------------------------------------------------------------------------- typing


def typed_orders(*rows: str) -> tuple[arrow.Table, dict[str, list[int]]]:
    table, failures = typed("orders", read_landed(ORDERS, orders(*rows)).raw)
    return table, {f.rule: f.rows.tolist() for f in failures}


def test_typed_casts_to_the_contracts_types_in_its_order() -> None:
    header_reversed = ",".join(reversed(HEADER.split(",")))
    raw = read_landed(ORDERS, orders(",".join(reversed(ROW.split(","))), header=header_reversed)).raw
    table, failures = typed("orders", raw)
    assert failures == []
    assert table.schema.names == COLUMNS
    assert [f.type for f in table.schema] == [f.type for f in arrow_schema("orders", contract="filedrop")]
    assert table.to_pylist()[0]["created_at"] == datetime(2026, 11, 1, 10, tzinfo=UTC)
    assert table.column("num_of_item").to_pylist() == [2]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-01T10:00:00Z", datetime(2026, 11, 1, 10, tzinfo=UTC)),
        ("2026-11-01T12:00:00+02:00", datetime(2026, 11, 1, 10, tzinfo=UTC)),
        ("2026-11-01T05:00:00-0500", datetime(2026, 11, 1, 10, tzinfo=UTC)),
        ("2026-11-01 10:00:00", datetime(2026, 11, 1, 10, tzinfo=UTC)),  # no zone: UTC
        ("2026-11-01T10:00:00.250000", datetime(2026, 11, 1, 10, 0, 0, 250000, tzinfo=UTC)),
        ("2026-11-01", datetime(2026, 11, 1, tzinfo=UTC)),
    ],
)
def test_timestamps_with_or_without_a_zone(text: str, expected: datetime) -> None:
    # alone in a column, and beside both forms (zoned and zoneless in one column)
    created = "2026-11-01T10:00:00Z"
    alone, failures = typed_orders(ROW.replace(created, text))
    assert failures == {}
    assert alone.column("created_at").to_pylist() == [expected]
    mixed, failures = typed_orders(
        ROW.replace(created, text),
        ROW.replace("O1", "O2").replace(created, "2026-11-02T00:00:00Z"),
        ROW.replace("O1", "O3").replace(created, "2026-11-02 00:00:00"),
    )
    assert failures == {}
    assert mixed.column("created_at").to_pylist() == [expected] + [datetime(2026, 11, 2, tzinfo=UTC)] * 2


def test_cells_that_do_not_cast_are_null_and_listed_by_rule_and_row() -> None:
    table, failures = typed_orders(
        ROW,
        ROW.replace("O1", "O2")[:-1] + "2.5",
        ROW.replace("O1", "O3")[:-1] + "two",
        ROW.replace("O1", "O4").replace("2026-11-01T10:00:00Z", "yesterday"),
        ROW.replace("O1", "O5").replace("2026-11-01T10:00:00Z", "2026-13-45T10:00:00Z"),  # the right shape
        ROW.replace("O1", "O6")[:-1] + "99999999999",  # beyond int32
        ROW.replace("O1", "O7")[:-1] + "3.0",  # integral: as spreadsheets export integers
    )
    assert failures == {"num_of_item: integer": [1, 2, 5], "created_at: timestamp": [3, 4]}
    assert table.column("num_of_item").to_pylist() == [2, None, None, 2, 2, None, 3]
    assert table.column("created_at").null_count == 2


def test_numbers_are_plain_decimals() -> None:
    header = "id,order_id,user_id,product_id,status,created_at,shipped_at,delivered_at,returned_at,sale_price"
    prices = ["12.5", "-0.5", "1e3", ".5", "nan", "inf", "1,5", "€3"]
    rows = [
        f"I{i},O1,U1,P{i:04d},delivered,,,,,{p if ',' not in p else chr(34) + p + chr(34)}"
        for i, p in enumerate(prices)
    ]
    raw = read_landed("landing/order_items/i.csv", "\n".join([header, *rows, ""]).encode()).raw
    table, failures = typed("order_items", raw)
    assert [(f.rule, f.rows.tolist()) for f in failures] == [("sale_price: number", [4, 5, 6, 7])]
    assert "'nan'" in failures[0].detail
    assert table.column("sale_price").to_pylist() == [12.5, -0.5, 1000.0, 0.5, None, None, None, None]


def test_typing_no_rows_gives_the_empty_typed_table() -> None:
    empty = arrow.table({c: arrow.array([], arrow.string()) for c in COLUMNS})
    table, failures = typed("orders", empty)
    assert (table.num_rows, failures) == (0, [])
    assert table.schema.names == COLUMNS


# ---------------------------------------------------------------------------- properties

CELLS = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)


@settings(derandomize=True, max_examples=60, deadline=None)
@given(st.lists(st.lists(CELLS, min_size=len(COLUMNS), max_size=len(COLUMNS)), min_size=1, max_size=8))
def test_any_csv_the_csv_module_writes_reads_back_cell_for_cell(rows: list[list[str]]) -> None:
    out = io.StringIO(newline="")
    writer = csv.writer(out)  # RFC 4180: CRLF line ends, so a lone CR in a value is quoted
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    landed = read_landed(ORDERS, out.getvalue().encode("utf-8"))
    assert landed.raw.to_pylist() == [
        {c: (v if v != "" else None) for c, v in zip(COLUMNS, r, strict=True)} for r in rows
    ]


@settings(derandomize=True, max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=-(2**31), max_value=2**31 - 1), min_size=1, max_size=20))
def test_any_int32_typed_back(numbers: list[int]) -> None:
    rows = [ROW.replace("O1", f"O{i}")[:-1] + str(n) for i, n in enumerate(numbers)]
    table, failures = typed_orders(*rows)
    assert failures == {}
    assert table.column("num_of_item").to_pylist() == numbers
