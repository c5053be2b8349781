"""Validating one whole file set against ``contracts/filedrop.odcs.yaml``: every rule, every file.

``validate_set`` reads each file (a file refused whole is a failure of that file, and the others
are still read, so the report lists everything), casts it to the contract's types, then runs the
value rules per table on the concatenation of that table's files with the Pandera schema derived
from the contract (required fields, unique keys, allowed values, minimums, patterns, lengths), and
the referential rules the contract states as ``relationships``: each order item's order and
product must be in the set or already loaded. A set passes only if nothing failed; with
``force=True`` (a set forced through from the UI) broken references are warnings instead.

Rule names (``RuleFailure.rule``) are stable, and ``cart_lakehouse.filedrop.sample.FAULTS`` uses
them as keys:

- the file rules of ``csvfile.FILE_RULES`` (``empty file``, ``delimiter``...), one per file;
- ``<table>.<column>: required | unique | enum | minimum 0 | pattern | length``, and
  ``<table>.(<a>, <b>): unique`` for a composite key;
- ``<table>.<column>: integer | number | timestamp`` for a cell that does not cast;
- ``<table>.<column> -> <table>.<column>`` for a reference that points nowhere.

Each failure counts its failing rows and carries up to five of them as received (strings), with
the file and the row (``_row`` 1 is the first row after the header).
"""

from __future__ import annotations

import copy
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt
import pandera.pandas as pandera
import pyarrow as arrow
import pyarrow.compute as pc

from cart_lakehouse.checks.schemas import arrow_frame, arrow_schema, pandera_schema
from cart_lakehouse.filedrop.csvfile import (
    CONTRACT,
    FileRejected,
    LandedFile,
    check_size,
    read_landed,
    typed,
)
from cart_lakehouse.filedrop.layout import TABLES
from contracts import Column, ForeignKey, load_contract

SAMPLE_ROWS = 5
Rows = npt.NDArray[np.int64]


@dataclass
class RuleFailure:
    """One rule a set broke: where, how many rows (None: a whole file), a few of them, and why."""

    rule: str
    table: str | None
    files: list[str]
    failed_rows: int | None
    sample: list[dict[str, Any]]
    detail: str
    # positions of the failing rows in the table's concatenated files (not in the report)
    rows: Rows | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "table": self.table,
            "files": self.files,
            "failed_rows": self.failed_rows,
            "detail": self.detail,
            "sample": self.sample,
        }


def references() -> tuple[ForeignKey, ...]:
    """The foreign keys of the file drop's contract (ODCS ``relationships``)."""
    return load_contract(CONTRACT).foreign_keys()


@dataclass
class SetValidation:
    """The outcome of validating a set: pass or fail, every failure, and the tables read."""

    passed: bool
    failures: list[RuleFailure]
    warnings: list[RuleFailure]
    bronze: dict[str, arrow.Table]  # per file that could be read: as received, every column a string
    # per table: the set's files concatenated, typed by the contract (its exact schema, nullability
    # too, when the set passed; every field nullable otherwise)
    tables: dict[str, arrow.Table]
    rows: dict[str, int]  # per table: rows of the files that could be read
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # per key: table, bytes, rows, status
    failed_rows: dict[str, int] = field(default_factory=dict)  # per table: rows breaking any value rule
    notes: list[str] = field(default_factory=list)  # rules not checked, and why
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase

    def report(self) -> dict[str, Any]:
        """The whole outcome as JSON-able data (the quarantine's report.json)."""
        return {
            "passed": self.passed,
            "files": [{"key": k, **v} for k, v in self.files.items()],
            "rows": self.rows,
            "failed_rows": self.failed_rows,
            "rules_broken": len(self.failures),
            "failures": [f.to_dict() for f in self.failures],
            "warnings": [f.to_dict() for f in self.warnings],
            "notes": self.notes,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }

    def markdown(self) -> str:
        """The outcome as Markdown, for a person reading the run in the Dagster UI."""
        rows = ", ".join(f"{t} {n:,}" for t, n in self.rows.items()) or "none"
        if self.passed:
            head = f"**Set valid** ({len(self.files)} files; rows: {rows})"
        else:
            head = f"**Set rejected: {len(self.failures)} rule(s) broken** ({len(self.files)} files; rows read: {rows})"
        lines = [head, "", "| File | Table | Bytes | Rows | Status |", "|---|---|---:|---:|---|"]
        for key, info in self.files.items():
            n = "" if info["rows"] is None else f"{info['rows']:,}"
            size = "" if info["bytes"] is None else f"{info['bytes']:,}"
            lines.append(f"| {_cell(key)} | {info['table'] or ''} | {size} | {n} | {_cell(info['status'])} |")
        for title, items in (("Failures", self.failures), ("Warnings (forced through)", self.warnings)):
            if not items:
                continue
            lines += [
                "",
                f"**{title}**",
                "",
                "| Rule | Table | Files | Failed rows | Detail |",
                "|---|---|---|---:|---|",
            ]
            for f in items:
                n = "whole file" if f.failed_rows is None else f"{f.failed_rows:,}"
                lines.append(
                    f"| `{_cell(f.rule)}` | {f.table or ''} | {_cell(', '.join(f.files))} | {n} | {_cell(f.detail)} |"
                )
            for f in items:
                if f.sample:
                    lines += ["", f"Sample of `{_cell(f.rule)}` (_row 1 is the first row after the header):", ""]
                    lines += _sample_table(f.sample)
        if self.notes:
            lines += ["", *[f"- {n}" for n in self.notes]]
        return "\n".join(lines)


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _sample_table(sample: list[dict[str, Any]]) -> list[str]:
    columns = list(sample[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in sample:
        lines.append("| " + " | ".join("" if row[c] is None else _cell(row[c]) for c in columns) + " |")
    return lines


@dataclass
class _Table:
    """One table of the set: its files concatenated, and where each row came from."""

    name: str
    keys: list[str]
    raw: arrow.Table  # the contract's column order
    typed: arrow.Table
    file_of_row: npt.NDArray[np.int32]
    row_in_file: Rows

    def sample(self, rows: Rows) -> list[dict[str, Any]]:
        chosen = rows[:SAMPLE_ROWS]
        records: list[dict[str, Any]] = self.raw.take(arrow.array(chosen)).to_pylist()
        return [
            {"_file": self.keys[int(self.file_of_row[i])], "_row": int(self.row_in_file[i]) + 1, **record}
            for i, record in zip(chosen, records, strict=True)
        ]

    def files_of(self, rows: Rows) -> list[str]:
        return [self.keys[i] for i in np.unique(self.file_of_row[rows])]

    def failure(self, rule: str, rows: Rows, detail: str) -> RuleFailure:
        return RuleFailure(rule, self.name, self.files_of(rows), len(rows), self.sample(rows), detail, rows)


def _combine(name: str, landed: list[LandedFile], failures: list[RuleFailure]) -> _Table:
    columns = [c.name for c in load_contract(CONTRACT).columns(name)]
    raws = [f.raw.select(columns) for f in landed]
    typed_parts, offsets = [], np.cumsum([0] + [f.rows for f in landed])
    cast_failures: dict[str, list[tuple[Rows, str, tuple[str, ...]]]] = defaultdict(list)
    for raw, offset in zip(raws, offsets, strict=False):
        part, problems = typed(name, raw)
        typed_parts.append(part)
        for p in problems:
            cast_failures[p.rule].append((p.rows + offset, p.detail, p.values))
    table = _Table(
        name=name,
        keys=[f.key for f in landed],
        raw=arrow.concat_tables(raws),
        typed=arrow.concat_tables(typed_parts),
        file_of_row=np.repeat(np.arange(len(landed), dtype=np.int32), [f.rows for f in landed]),
        row_in_file=np.concatenate([np.arange(f.rows, dtype=np.int64) for f in landed]),
    )
    for rule, parts in cast_failures.items():
        rows = np.concatenate([p[0] for p in parts])
        values = tuple(dict.fromkeys(v for p in parts for v in p[2]))[:5]
        kind = rule.split(": ", 1)[1]
        detail = (
            parts[0][1] if len(parts) == 1 else f"{len(rows):,} row(s), not a {kind}: " + ", ".join(map(repr, values))
        )
        failures.append(table.failure(f"{name}.{rule}", rows, detail))
    return table


@cache
def _row_schema(name: str) -> pandera.DataFrameSchema:
    """The contract's Pandera schema without its composite-key check: Pandera builds that check's
    failure cases row by row (0.35 ms per duplicate, minutes for a file dropped twice), so the
    composite key is checked with ``DataFrame.duplicated`` below, on the same contract key."""
    schema = pandera_schema(name, contract=CONTRACT)
    if schema.unique is None:
        return schema
    stripped = copy.copy(schema)
    stripped.unique = None
    return stripped


def _label(col: Column | None, check: str) -> tuple[str, str]:
    """A Pandera check's rule label and what it means, from the contract column it came from."""
    if col is None:
        return check, check
    if check == "not_nullable":
        return "required", "empty, but the contract requires a value"
    if check == "field_uniqueness":
        return "unique", "the same value in more than one row"
    text = check.removeprefix(f"{col.name} ")
    if "enum" in col.custom and text.startswith("in ["):
        return "enum", f"not one of {', '.join(map(str, col.custom['enum']))}"
    for prefix, label in (
        (">= ", "minimum"),
        ("> ", "exclusive minimum"),
        ("<= ", "maximum"),
        ("< ", "exclusive maximum"),
    ):
        if text.startswith(prefix):
            bound = text.removeprefix(prefix)
            return f"{label} {bound}", f"must be {prefix}{bound}"
    if text.startswith("matches "):
        return "pattern", f"does not match {text.removeprefix('matches ')}"
    if text == "length within bounds":
        low, high = col.options.get("minLength"), col.options.get("maxLength")
        return "length", f"length not within {low if low is not None else 0}..{high if high is not None else 'any'}"
    return text, check


def _value_rules(table: _Table, cast_failed: Mapping[str, Rows]) -> list[RuleFailure]:
    """The contract's value rules on a table's typed rows, one failure per rule."""
    contract = load_contract(CONTRACT)
    columns = {c.name: c for c in contract.columns(table.name)}
    frame = arrow_frame(table.typed)
    found: dict[tuple[str, str], Rows] = {}
    try:
        _row_schema(table.name).validate(frame, lazy=True)
    except pandera.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        whole = cases[cases["index"].isna()]
        if len(whole):  # a schema-level problem (a column gone): the header check should have stopped it
            raise ValueError(f"{table.name}: {whole[['column', 'check']].to_dict('records')}") from exc
        cases = cases.assign(index=cases["index"].astype("int64"), column=cases["column"].astype(str))
        for (column, check), group in cases.groupby(["column", "check"], sort=False):
            found[(str(column), str(check))] = np.unique(group["index"].to_numpy(dtype=np.int64))
    key = contract.primary_key(table.name)
    if len(key) > 1:
        keys = frame[list(key)]
        duplicated = keys.duplicated(keep=False) & keys.notna().all(axis=1)
        if duplicated.any():
            found[(f"({', '.join(key)})", "field_uniqueness")] = np.flatnonzero(duplicated.to_numpy(dtype=bool))

    failures = []
    for (column, check), rows in found.items():
        col = columns.get(column)
        label, meaning = _label(col, check) if col or check != "field_uniqueness" else ("unique", "")
        if label == "unique" and col is not None:
            rows = rows[frame[column].iloc[rows].notna().to_numpy(dtype=bool)]  # an empty key is 'required'
        if label == "required" and column in cast_failed:
            rows = np.setdiff1d(rows, cast_failed[column])  # already reported: it did not cast
        if not len(rows):
            continue
        if label == "unique":
            key_columns = [column] if col is not None else list(key)
            # rows sharing a key next to each other (keys in order of first appearance): the
            # sample shows a duplicate with its twin
            groups = frame.iloc[rows][key_columns].groupby(key_columns, sort=False).ngroup().to_numpy()
            rows = rows[np.argsort(groups, kind="stable")]
            distinct = int(groups.max()) + 1
            meaning = f"{len(rows):,} rows share {distinct:,} value(s) of {', '.join(key_columns)}"
        rule = f"{table.name}.{column}: {label}"
        failures.append(table.failure(rule, rows, f"{column}: {meaning}" if col else meaning))
    return failures


def _references(
    tables: Mapping[str, _Table], rejected: set[str], known: Mapping[str, set[str]], notes: list[str]
) -> list[RuleFailure]:
    failures = []
    for ref in references():
        if ref.table in rejected or ref.target_table in rejected:
            which = ref.target_table if ref.target_table in rejected else ref.table
            notes.append(f"`{ref.rule}` not checked: a file of {which} was rejected")
            continue
        source = tables.get(ref.table)
        if source is None:
            continue
        values = source.typed.column(ref.column)
        allowed = [arrow.array(list(known.get(ref.target_table, ())), arrow.string())]
        if ref.target_table in tables:
            allowed.append(
                tables[ref.target_table].typed.column(ref.target_column).combine_chunks().cast(arrow.string())
            )
        value_set = pc.unique(arrow.concat_arrays(allowed))
        dangling = pc.and_(pc.is_valid(values), pc.invert(pc.is_in(values, value_set=value_set)))
        rows = np.flatnonzero(dangling.to_numpy(zero_copy_only=False)).astype(np.int64)
        if not len(rows):
            continue
        missing = pc.unique(values.take(arrow.array(rows))).to_pylist()
        shown = ", ".join(map(str, missing[:5])) + (", ..." if len(missing) > 5 else "")
        detail = (
            f"{len(rows):,} row(s) reference {len(missing):,} {ref.target} value(s) "
            f"neither in this set nor loaded before: {shown}"
        )
        failures.append(source.failure(ref.rule, rows, detail))
    return failures


def validate_set(
    files: Mapping[str, bytes],
    *,
    known_order_ids: set[str],
    known_product_ids: set[str],
    max_bytes: int | None = None,
    force: bool = False,
    rejected: Iterable[FileRejected] = (),
) -> SetValidation:
    """Validate a set ``{landing key: bytes}`` against the contract.

    ``known_order_ids`` / ``known_product_ids``: ids already loaded by earlier sets (references to
    them are satisfied). ``max_bytes``: refuse larger files (the caller should refuse them before
    reading, with ``csvfile.check_size``, and pass those refusals as ``rejected``, so the
    report still lists them). ``force``: broken references become warnings.
    """
    started = time.perf_counter()
    timings: dict[str, float] = {}
    failures: list[RuleFailure] = []
    notes: list[str] = []
    summary: dict[str, dict[str, Any]] = {}
    bronze: dict[str, arrow.Table] = {}
    landed: dict[str, list[LandedFile]] = defaultdict(list)
    rejected_tables: set[str] = set()

    def refuse(exc: FileRejected, size: int | None) -> None:
        for problem in exc.all():
            failures.append(RuleFailure(problem.rule, problem.table, [problem.key], None, [], problem.detail))
        summary[exc.key] = {"table": exc.table, "bytes": size, "rows": None, "status": f"rejected: {exc.rule}"}
        if exc.table is not None:
            rejected_tables.add(exc.table)

    for exc in rejected:
        refuse(exc, exc.size)
    for key in sorted(files):
        data = files[key]
        try:
            if max_bytes is not None:
                check_size(key, len(data), max_bytes)
            got = read_landed(key, data)
        except FileRejected as exc:
            refuse(exc, len(data))
            continue
        bronze[key] = got.raw
        landed[got.table].append(got)
        summary[key] = {"table": got.table, "bytes": len(data), "rows": got.rows, "status": "read"}
    timings["read"] = time.perf_counter() - started

    tables: dict[str, _Table] = {}
    failed_rows: dict[str, int] = {}
    for name in TABLES:
        if not landed[name]:
            continue
        mark = time.perf_counter()
        type_failures: list[RuleFailure] = []
        table = _combine(name, landed[name], type_failures)
        tables[name] = table
        timings[f"{name}: types"] = time.perf_counter() - mark
        mark = time.perf_counter()
        cast_failed = {f.rule.split(".", 1)[1].split(": ", 1)[0]: _rows_of(f) for f in type_failures}
        value_failures = _value_rules(table, cast_failed)
        timings[f"{name}: rules"] = time.perf_counter() - mark
        failures += type_failures + value_failures
        bad = [_rows_of(f) for f in type_failures + value_failures]
        failed_rows[name] = len(np.unique(np.concatenate(bad))) if bad else 0

    mark = time.perf_counter()
    known = {"orders": known_order_ids, "products": known_product_ids}
    broken_references = _references(tables, rejected_tables, known, notes)
    timings["references"] = time.perf_counter() - mark
    warnings: list[RuleFailure] = []
    if force:
        warnings = broken_references
        if broken_references:
            notes.append("forced through: broken references are warnings")
    else:
        failures += broken_references

    passed = not failures
    typed_tables = {}
    for name, table in tables.items():
        # a valid table meets the contract's nullability too: cast to its exact schema
        typed_tables[name] = table.typed.cast(arrow_schema(name, contract=CONTRACT)) if passed else table.typed
    timings["total"] = time.perf_counter() - started
    return SetValidation(
        passed=passed,
        failures=failures,
        warnings=warnings,
        bronze=bronze,
        tables=typed_tables,
        rows={name: table.raw.num_rows for name, table in tables.items()},
        files=dict(sorted(summary.items())),
        failed_rows=failed_rows,
        notes=notes,
        timings=timings,
    )


def _rows_of(failure: RuleFailure) -> Rows:
    if failure.rows is None:
        raise ValueError(f"{failure.rule} is not a row-level failure")
    return failure.rows
