"""Reading one landed CSV file as ``contracts/filedrop.odcs.yaml`` describes it.

A file either reads into an Arrow table of strings (``read_landed``: every column as received,
empty cells null) or is refused whole with a ``FileRejected`` naming one of ``FILE_RULES``: a key
outside the three landing prefixes, a file over the size limit (``check_size``, from the object's
size before it is read), an empty file, another encoding than UTF-8 (a UTF-8 byte order mark is
fine), binary content or rows with another field count than the header, another delimiter than the
contract's, a header and no rows, and missing, unexpected or duplicated columns (columns may come in
any order). The file rules are the schema objects' custom properties in the contract.

``typed`` then casts the strings to the contract's Arrow types, vectorised with ``pyarrow.compute``:
integers must be integers (``"3"``; an integral ``"3.0"`` as spreadsheets export it is accepted,
``"2.5"`` and ``"two"`` are not), numbers plain decimals (no ``nan``/``inf``), timestamps ISO 8601
with or without a zone (``2026-11-01T10:00:00Z``, ``...+02:00``, ``2026-11-01 10:00:00``; no zone
means UTC). A cell that does not cast is null in the typed table and listed in a ``RowFailure``.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from functools import cache

import numpy as np
import numpy.typing as npt
import pyarrow as arrow
import pyarrow.compute as pc
import pyarrow.csv as arrow_csv

from cart_lakehouse.checks.schemas import arrow_schema
from cart_lakehouse.filedrop.layout import TABLES, table_of
from contracts import load_contract

CONTRACT = "filedrop"
FILE_RULES = (
    "unknown file",
    "size limit",
    "empty file",
    "encoding",
    "not a csv",
    "delimiter",
    "header only",
    "missing columns",
    "unexpected columns",
    "duplicated columns",
)
OTHER_DELIMITERS = {";": "';'", "\t": "tab", "|": "'|'"}

_NOT_SPACE = re.compile(rb"\S")
_INTEGER = r"^[+-]?[0-9]+(\.0*)?$"
_NUMBER = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_TIMESTAMP = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?(Z|[+-][0-9]{2}:?[0-9]{2})?)?$"
)
_ZONED = r"(Z|[+-][0-9]{2}:?[0-9]{2})$"
_INT32 = (-(2**31), 2**31 - 1)


class FileRejected(Exception):
    """A whole-file problem: the file is not read further (``rule`` is one of ``FILE_RULES``).

    ``related``: further problems of the same kind found at once (a header both missing and adding
    columns), so a report lists every one."""

    def __init__(
        self,
        rule: str,
        detail: str,
        key: str,
        *,
        table: str | None = None,
        related: tuple[FileRejected, ...] = (),
        size: int | None = None,
    ) -> None:
        if rule not in FILE_RULES:
            raise ValueError(f"unknown file rule {rule!r}; one of {FILE_RULES}")
        super().__init__(f"{key}: {rule}: {detail}")
        self.rule = rule
        self.detail = detail
        self.key = key
        self.table = table if table is not None else table_of(key)
        self.related = related
        self.size = size  # bytes, when known without reading (the size limit)

    def all(self) -> list[FileRejected]:
        """This problem and the related ones."""
        return [self, *self.related]


@dataclass(frozen=True)
class FileFormat:
    """A table's file rules, from its schema object's custom properties in the contract."""

    table: str
    landing_prefix: str
    file_format: str
    encoding: str
    delimiter: str
    header: str
    columns: tuple[str, ...]


@cache
def file_format(table: str) -> FileFormat:
    contract = load_contract(CONTRACT)
    for obj in contract.document.schema_ or []:
        if obj.name == table:
            props = {c.property: c.value for c in obj.customProperties or [] if c.property}
            spec = FileFormat(
                table=table,
                landing_prefix=str(props["landingPrefix"]),
                file_format=str(props["fileFormat"]).lower(),
                encoding=str(props["encoding"]).lower().replace("_", "-"),
                delimiter=str(props["delimiter"]),
                header=str(props["header"]),
                columns=tuple(c.name for c in contract.columns(table)),
            )
            # the reader implements what the contract says today; a new value needs code here
            if (spec.file_format, spec.encoding, spec.header) != ("csv", "utf-8", "exact"):
                raise ValueError(f"{CONTRACT}.{table}: unsupported file rules {props}")
            return spec
    raise KeyError(f"contract {CONTRACT!r} has no schema object {table!r}")


@dataclass(frozen=True)
class LandedFile:
    """One landed file read as received: every column a string, in the header's order."""

    key: str
    table: str
    raw: arrow.Table

    @property
    def rows(self) -> int:
        return int(self.raw.num_rows)


@dataclass(frozen=True, eq=False)
class RowFailure:
    """Cells of one column that do not cast to the contract's type (``rule``: ``<column>: <type>``)."""

    rule: str
    column: str
    rows: npt.NDArray[np.int64]  # positions in the table: 0 is the first row after the header
    detail: str = ""
    values: tuple[str, ...] = field(default=())  # a few of the offending values


def table_for(key: str) -> str:
    """The table a landed key belongs to, or ``unknown file``."""
    table = table_of(key)
    if table is None or not key.lower().endswith("." + file_format(table).file_format):
        expected = ", ".join(f"{file_format(t).landing_prefix}<name>.csv" for t in TABLES)
        raise FileRejected("unknown file", f"not a file of the drop: expected one of {expected}", key, table=table)
    return table


def check_size(key: str, size: int, limit: int) -> None:
    """Refuse a file larger than ``limit`` bytes, from the size S3 reports, before reading it."""
    if size > limit:
        raise FileRejected(
            "size limit",
            f"{size:,} bytes, over the limit of {limit:,} (CART_FILEDROP_MAX_FILE_BYTES); split the file",
            key,
            size=size,
        )


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _check_encoding_and_binary(key: str, data: bytes, start: int) -> None:
    for bom, name in (
        (codecs.BOM_UTF32_LE, "UTF-32"),
        (codecs.BOM_UTF32_BE, "UTF-32"),
        (codecs.BOM_UTF16_LE, "UTF-16"),
        (codecs.BOM_UTF16_BE, "UTF-16"),
    ):
        if data.startswith(bom):
            raise FileRejected("encoding", f"{name} (byte order mark {bom.hex()}); the contract says UTF-8", key)
    nul = data.find(b"\x00", start)
    if nul < 0:
        return
    head = data[start : start + 200]
    if len(head) >= 4 and (head[1::2].count(0) == len(head[1::2]) or head[0::2].count(0) == len(head[0::2])):
        raise FileRejected("encoding", "looks like UTF-16 (every other byte is NUL); the contract says UTF-8", key)
    kind = ""
    if data.startswith(b"\x1f\x8b"):
        kind = " (gzip-compressed: upload the uncompressed CSV)"
    elif data.startswith(b"PK\x03\x04"):
        kind = " (a zip archive, such as an Excel .xlsx: export it as CSV)"
    raise FileRejected("not a csv", f"binary content: a NUL byte at line {_line_of(data, nul)}{kind}", key)


def _encoding_error(key: str, data: bytes, start: int) -> FileRejected:
    """The first byte that is not UTF-8, where it is, and what the text around it may be."""
    try:
        codecs.decode(data[start:], "utf-8")
    except UnicodeDecodeError as exc:
        at = start + exc.start
        line = _line_of(data, at)
        guess = data[max(start, at - 20) : at + 20].decode("cp1252", errors="replace").replace("\n", " ")
        return FileRejected(
            "encoding",
            f"not UTF-8: byte 0x{data[at]:02x} at line {line} (near {guess!r}: Latin-1/Windows-1252?); "
            "the contract says UTF-8",
            key,
        )
    return FileRejected("encoding", "not UTF-8; the contract says UTF-8", key)


def _header(key: str, data: bytes, start: int, spec: FileFormat) -> list[str]:
    end = data.find(b"\n", start)
    line = data[start : len(data) if end < 0 else end]
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise _encoding_error(key, data, start) from None
    names = next(csv.reader([text.rstrip("\r")], delimiter=spec.delimiter))
    if len(names) == 1:
        found = Counter({d: names[0].count(d) for d in OTHER_DELIMITERS if d != spec.delimiter})
        delimiter, times = found.most_common(1)[0]
        if times:
            raise FileRejected(
                "delimiter",
                f"the header is separated by {OTHER_DELIMITERS[delimiter]} ({text[:80]!r}); "
                f"the contract says {spec.delimiter!r}",
                key,
            )
    problems: list[FileRejected] = []
    duplicated = [n for n, c in Counter(names).items() if c > 1]
    if duplicated:
        problems.append(FileRejected("duplicated columns", f"more than once: {', '.join(duplicated)}", key))
    missing = [c for c in spec.columns if c not in names]
    if missing:
        problems.append(
            FileRejected("missing columns", f"missing: {', '.join(missing)} (expected: {', '.join(spec.columns)})", key)
        )
    unexpected = [repr(n) if not n.strip() or n != n.strip() else n for n in names if n not in spec.columns]
    if unexpected:
        problems.append(
            FileRejected(
                "unexpected columns",
                f"not in the contract: {', '.join(unexpected)} (expected: {', '.join(spec.columns)})",
                key,
            )
        )
    if problems:
        raise FileRejected(problems[0].rule, problems[0].detail, key, table=spec.table, related=tuple(problems[1:]))
    return names


def _first_bad_row(data: bytes, start: int, spec: FileFormat, width: int) -> tuple[int, int] | None:
    """Line number and field count of the first row whose field count differs (the slow path of a
    file already known to be broken)."""
    text = io.StringIO(data[start:].decode("utf-8", errors="replace"), newline="")
    reader = csv.reader(text, delimiter=spec.delimiter)
    for row in reader:
        if row and len(row) != width:
            return reader.line_num, len(row)
    return None


def read_landed(key: str, data: bytes) -> LandedFile:
    """Read one landed file as strings, or raise ``FileRejected``."""
    table = table_for(key)
    spec = file_format(table)
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    if not _NOT_SPACE.search(data, start):
        raise FileRejected("empty file", "no content" if len(data) <= start else "only whitespace", key)
    _check_encoding_and_binary(key, data, start)
    names = _header(key, data, start, spec)
    header_end = data.find(b"\n", start)
    if header_end < 0 or not _NOT_SPACE.search(data, header_end):
        raise FileRejected("header only", "a header and no rows", key)

    invalid: list[int] = []
    lock = threading.Lock()

    def invalid_row(row: arrow_csv.InvalidRow) -> str:
        with lock:  # called from Arrow's reader threads
            invalid.append(row.actual_columns)
        return "skip"

    try:
        raw = arrow_csv.read_csv(
            arrow.BufferReader(arrow.py_buffer(data).slice(start)),
            parse_options=arrow_csv.ParseOptions(
                delimiter=spec.delimiter, newlines_in_values=True, invalid_row_handler=invalid_row
            ),
            convert_options=arrow_csv.ConvertOptions(
                column_types=dict.fromkeys(names, arrow.string()),
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
                null_values=[""],
            ),
        )
    except arrow.ArrowInvalid as exc:
        if "UTF8" in str(exc):
            raise _encoding_error(key, data, start) from None
        raise FileRejected("not a csv", f"unreadable as CSV: {exc}", key) from None
    if invalid:
        first = _first_bad_row(data, start, spec, len(names))
        where = f"; the first at line {first[0]} has {first[1]}" if first else ""
        raise FileRejected(
            "not a csv",
            f"{len(invalid):,} rows have another number of fields than the header's {len(names)}{where}",
            key,
        )
    if raw.num_rows == 0:
        raise FileRejected("header only", "a header and no rows", key)
    return LandedFile(key=key, table=table, raw=raw)


# ---------------------------------------------------------------------------- typing


def _cast(values: arrow.Array, to: arrow.DataType) -> tuple[arrow.Array, list[int]]:
    """Cast, and where some value does not cast, find which by halving (rare: the regular
    expressions before it let through only values of the right shape)."""
    try:
        return values.cast(to), []
    except (arrow.ArrowInvalid, arrow.ArrowNotImplementedError):
        if len(values) == 1:
            return arrow.nulls(1, to), [0]
    mid = len(values) // 2
    left, bad_left = _cast(values.slice(0, mid), to)
    right, bad_right = _cast(values.slice(mid), to)
    return arrow.concat_arrays([left, right]), bad_left + [mid + i for i in bad_right]


def _shaped(values: arrow.Array, pattern: str) -> arrow.Array:
    """True where the value is null or has the shape; False where it must fail."""
    return pc.fill_null(pc.match_substring_regex(values, pattern), True)


def _all_cast(values: arrow.Array, to: arrow.DataType) -> arrow.Array | None:
    """The fast path: every value casts as it is (None: some do not; look closer)."""
    try:
        return values.cast(to)
    except (arrow.ArrowInvalid, arrow.ArrowNotImplementedError):
        return None


def _all_valid(values: arrow.Array) -> arrow.Array:
    return arrow.array(np.ones(len(values), dtype=bool))


def _to_integer(values: arrow.Array, to: arrow.DataType) -> tuple[arrow.Array, arrow.Array]:
    cast = _all_cast(values, to)  # Arrow casts plain digits only, within the type's range
    if cast is not None:
        return cast, _all_valid(values)
    ok = _shaped(values, _INTEGER)
    digits = pc.replace_substring_regex(pc.if_else(ok, values, None), r"\.0*$", "")
    wide, bad = _cast(digits, arrow.int64())
    ok = _without(ok, bad)
    if arrow.types.is_int32(to):
        low, high = _INT32
        ok = pc.and_(ok, pc.fill_null(pc.and_(pc.greater_equal(wide, low), pc.less_equal(wide, high)), True))
        wide = pc.if_else(ok, wide, None)
    return wide.cast(to), ok


def _to_number(values: arrow.Array, to: arrow.DataType) -> tuple[arrow.Array, arrow.Array]:
    cast = _all_cast(values, to)
    # Arrow also reads 'nan' and 'inf', which are no prices: those take the slow path
    if cast is not None and pc.all(pc.is_finite(cast)).as_py() is not False:
        return cast, _all_valid(values)
    ok = _shaped(values, _NUMBER)
    cast, bad = _cast(pc.if_else(ok, values, None), to)
    return cast, _without(ok, bad)


def _to_timestamp(values: arrow.Array, to: arrow.DataType) -> tuple[arrow.Array, arrow.Array]:
    cast = _all_cast(values, to)  # every value with a zone (the common export)
    if cast is None:
        naive = _all_cast(values, arrow.timestamp(to.unit))  # or every value without one
        cast = None if naive is None else naive.cast(to)
    if cast is not None:
        return cast, _all_valid(values)
    ok = _shaped(values, _TIMESTAMP)
    zoned = pc.fill_null(pc.match_substring_regex(values, _ZONED), False)
    with_zone, bad_zoned = _cast(pc.if_else(pc.and_(ok, zoned), values, None), to)
    naive_type = arrow.timestamp(to.unit)
    without_zone, bad_naive = _cast(pc.if_else(pc.and_(ok, pc.invert(zoned)), values, None), naive_type)
    ok = _without(_without(ok, bad_zoned), bad_naive)
    # a timestamp without a zone is UTC: the same instant count, now labelled UTC
    return pc.coalesce(with_zone, without_zone.cast(to)), ok


def _without(ok: arrow.Array, bad: list[int]) -> arrow.Array:
    if not bad:
        return ok
    mask = np.asarray(ok.to_numpy(zero_copy_only=False), dtype=bool).copy()
    mask[bad] = False
    return arrow.array(mask)


_CASTS = {"integer": _to_integer, "number": _to_number, "timestamp": _to_timestamp}


def _kind(to: arrow.DataType) -> str | None:
    if arrow.types.is_integer(to):
        return "integer"
    if arrow.types.is_floating(to) or arrow.types.is_decimal(to):
        return "number"
    if arrow.types.is_timestamp(to):
        return "timestamp"
    if arrow.types.is_string(to):
        return None
    raise ValueError(f"the file drop cannot read {to} columns yet")


def typed(table: str, raw: arrow.Table) -> tuple[arrow.Table, list[RowFailure]]:
    """The raw strings cast to the contract's types (the contract's column order; every field
    nullable, since a cell that does not cast becomes null) and the cells that did not cast."""
    schema = arrow_schema(table, contract=CONTRACT)
    columns: list[arrow.Array] = []
    failures: list[RowFailure] = []
    for target in schema:
        values = raw.column(target.name).combine_chunks() if raw.num_rows else arrow.array([], arrow.string())
        kind = _kind(target.type)
        if kind is None:
            columns.append(values)
            continue
        cast, ok = _CASTS[kind](values, target.type)
        bad = np.flatnonzero(~np.asarray(ok.to_numpy(zero_copy_only=False), dtype=bool))
        if len(bad):
            examples = tuple(dict.fromkeys(values.take(arrow.array(bad[:50])).to_pylist()))[:5]
            shown = ", ".join(repr(v) for v in examples)
            what = {
                "integer": f"an integer ({target.type})",
                "number": "a number",
                "timestamp": "an ISO 8601 timestamp",
            }[kind]
            failures.append(
                RowFailure(
                    rule=f"{target.name}: {kind}",
                    column=target.name,
                    rows=bad.astype(np.int64),
                    detail=f"{len(bad):,} row(s), not {what}: {shown}",
                    values=tuple(str(v) for v in examples),
                )
            )
        columns.append(cast)
    nullable = arrow.schema([f.with_nullable(True) for f in schema])
    return arrow.Table.from_arrays(columns, schema=nullable), failures
