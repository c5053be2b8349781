"""Quality rules derived from the data contracts: a Pandera schema and Arrow types per table.

Every rule comes from ``contracts/*.odcs.yaml``: required → not nullable, primary key → unique
(composite keys too), minimum/maximum/exclusive bounds, pattern, lengths, ``enum`` custom
property → allowed values, physicalType → the exact Arrow type of the Parquet column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from functools import cache
from typing import Any

import pandas as pd
import pandera.pandas as pa
import pyarrow as arrow

from contracts import Column, load_contract

_DECIMAL = re.compile(r"decimal\((\d+),\s*(\d+)\)")
_ARROW_TYPES: dict[str, arrow.DataType] = {
    "string": arrow.string(),
    "int": arrow.int32(),
    "bigint": arrow.int64(),
    "double": arrow.float64(),
    "boolean": arrow.bool_(),
    "date": arrow.date32(),
    "timestamp": arrow.timestamp("us", tz="UTC"),
}


def arrow_type(physical_type: str) -> arrow.DataType:
    """The Arrow (and Parquet) type a contract's physicalType stands for."""
    match = _DECIMAL.fullmatch(physical_type)
    if match:
        return arrow.decimal128(int(match[1]), int(match[2]))
    try:
        return _ARROW_TYPES[physical_type]
    except KeyError:
        raise ValueError(f"physicalType {physical_type!r} has no Arrow type; add it to {__name__}") from None


def arrow_schema(table: str, contract: str = "lakehouse") -> arrow.Schema:
    """The Arrow schema a contract's table is written with."""
    return arrow.schema(
        [
            arrow.field(c.name, arrow_type(c.physical_type), nullable=not c.required)
            for c in load_contract(contract).columns(table)
        ]
    )


def _same_type(actual: arrow.DataType, expected: arrow.DataType) -> bool:
    if arrow.types.is_string(expected):
        return bool(arrow.types.is_string(actual) or arrow.types.is_large_string(actual))
    if arrow.types.is_timestamp(expected):
        tz = str(getattr(actual, "tz", None))
        return bool(arrow.types.is_timestamp(actual) and tz in ("UTC", "+00:00", "Etc/UTC"))
    return bool(actual == expected)


def type_mismatches(schema: arrow.Schema, table: str, contract: str = "lakehouse") -> list[str]:
    """Columns missing, extra or of another type than the contract says (empty: all agree)."""
    columns = load_contract(contract).columns(table)
    problems = []
    for col in columns:
        if col.name not in schema.names:
            problems.append(f"{col.name}: missing")
            continue
        actual, expected = schema.field(col.name).type, arrow_type(col.physical_type)
        if not _same_type(actual, expected):
            problems.append(f"{col.name}: {actual}, contract says {expected} ({col.physical_type})")
    known = {c.name for c in columns}
    problems += [f"{name}: not in the contract" for name in schema.names if name not in known]
    return problems


def _bound(col: Column, value: Any) -> Any:
    return date.fromisoformat(value) if col.logical_type == "date" and isinstance(value, str) else value


def column_checks(col: Column) -> list[pa.Check]:
    """The value rules of one column (types are checked on the Arrow schema)."""
    o, checks = col.options, []
    if "minimum" in o:
        checks.append(pa.Check.ge(_bound(col, o["minimum"]), error=f"{col.name} >= {o['minimum']}"))
    if "exclusiveMinimum" in o:
        checks.append(pa.Check.gt(_bound(col, o["exclusiveMinimum"]), error=f"{col.name} > {o['exclusiveMinimum']}"))
    if "maximum" in o:
        checks.append(pa.Check.le(_bound(col, o["maximum"]), error=f"{col.name} <= {o['maximum']}"))
    if "exclusiveMaximum" in o:
        checks.append(pa.Check.lt(_bound(col, o["exclusiveMaximum"]), error=f"{col.name} < {o['exclusiveMaximum']}"))
    if "pattern" in o:
        checks.append(pa.Check.str_matches(o["pattern"], error=f"{col.name} matches {o['pattern']}"))
    if "minLength" in o or "maxLength" in o:
        checks.append(
            pa.Check.str_length(o.get("minLength"), o.get("maxLength"), error=f"{col.name} length within bounds")
        )
    if "enum" in col.custom:
        allowed = list(col.custom["enum"])
        checks.append(pa.Check.isin(allowed, error=f"{col.name} in {allowed}"))
    return checks


@cache
def pandera_schema(table: str, contract: str = "lakehouse") -> pa.DataFrameSchema:
    """The Pandera schema of a contract's table: nullability, uniqueness, ranges, patterns, enums."""
    doc = load_contract(contract)
    key = doc.primary_key(table)
    columns = {
        col.name: pa.Column(
            dtype=None,
            checks=column_checks(col),
            nullable=not col.required,
            unique=key == (col.name,),
            required=True,
            description=col.description,
        )
        for col in doc.columns(table)
    }
    return pa.DataFrameSchema(
        columns,
        unique=list(key) if len(key) > 1 else None,
        strict=False,  # extra columns are reported by type_mismatches
        name=f"{contract}.{table}",
        report_duplicates="all",
    )


def arrow_frame(table: arrow.Table) -> pd.DataFrame:
    """A table as pandas for validation, its columns kept in Arrow (``pd.ArrowDtype``): no copy into
    Python objects, and the rules run in Arrow's compute kernels (strings, decimals, dates). Measured
    for 1M silver rows: the conversion 2.3 s → 0 s and the validation 6.5 s → 0.8 s (a warm process)."""
    return table.to_pandas(types_mapper=pd.ArrowDtype)


@dataclass(frozen=True)
class Validation:
    """What a table's data broke: failing rows (counted once), failures per rule, a sample."""

    rows: int
    failed_rows: int
    failures: dict[str, int]
    sample: pd.DataFrame
    type_errors: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return self.failed_rows == 0 and not self.type_errors


def validate(
    frame: pd.DataFrame,
    table: str,
    schema: arrow.Schema | None = None,
    sample_size: int = 5,
    contract: str = "lakehouse",
) -> Validation:
    """Validate every rule at once (lazy) and summarise the failures."""
    type_errors = tuple(type_mismatches(schema, table, contract)) if schema is not None else ()
    frame = frame.reset_index(drop=True)
    try:
        pandera_schema(table, contract).validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        key = ", ".join(load_contract(contract).primary_key(table))
        unique = cases["check"].astype(str).isin(["multiple_fields_uniqueness", "field_uniqueness"])
        rule = (cases["column"].fillna("table").astype(str) + ": " + cases["check"].astype(str)).where(
            ~unique, f"({key}): unique"
        )
        counted = cases.assign(rule=rule).drop_duplicates(["rule", "index"])
        failures = {str(k): int(v) for k, v in counted["rule"].value_counts().items()}
        index = pd.to_numeric(cases["index"], errors="coerce").dropna().astype(int).unique()
        bad = frame.loc[frame.index.isin(index)]
        whole_table = cases["index"].isna().any()
        failed_rows = len(bad) if len(bad) else (len(frame) if whole_table else 0)
        return Validation(len(frame), max(failed_rows, 1), failures, bad.head(sample_size), type_errors)
    return Validation(len(frame), 0, {}, frame.head(0), type_errors)


def failing_rows(frame: pd.DataFrame, table: str, contract: str = "lakehouse") -> dict[int, list[str]]:
    """Each failing row's position in ``frame`` and the rules it breaks (row-level rules only; a
    table-level failure, such as a missing column, raises: no row could be trusted)."""
    frame = frame.reset_index(drop=True)
    try:
        pandera_schema(table, contract).validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        if cases["index"].isna().any():
            raise ValueError(f"{contract}.{table}: {cases[cases['index'].isna()]['check'].tolist()}") from exc
        rows: dict[int, list[str]] = {}
        for index, column, check in zip(cases["index"], cases["column"], cases["check"], strict=True):
            rule = f"{column}: {check}"
            found = rows.setdefault(int(index), [])
            if rule not in found:
                found.append(rule)
        return dict(sorted(rows.items()))
    return {}
