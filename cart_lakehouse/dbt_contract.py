"""dbt's tests of the gold models, generated from the lakehouse contract so the two cannot drift.

``python -m cart_lakehouse.dbt_contract`` rewrites ``dbt_project/models/gold/_contract.yml``;
``--check`` fails when the committed file differs from what the contract gives (the test suite
runs the same comparison). Each rule becomes a dbt test, which Dagster shows as an asset check:

- required → ``not_null``; a one-column primary key or ``unique`` → ``unique``;
- a composite primary key → ``unique_key`` (``dbt_project/tests/generic/unique_key.sql``);
- the ``enum`` custom property → ``accepted_values``;
- minimum / maximum / exclusive bounds of numbers → ``in_range`` (``tests/generic/in_range.sql``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from contracts import Column, load_contract

GOLD_MODELS = ("sales_hourly", "sales_by_category_daily", "buyer_daily")
SCHEMA_FILE = Path(__file__).resolve().parents[1] / "dbt_project" / "models" / "gold" / "_contract.yml"
_BOUNDS = {
    "minimum": "minimum",
    "maximum": "maximum",
    "exclusiveMinimum": "exclusive_minimum",
    "exclusiveMaximum": "exclusive_maximum",
}
HEADER = "# Generated from contracts/lakehouse.odcs.yaml by `python -m cart_lakehouse.dbt_contract`: do not edit.\n"


def column_tests(model: str, column: Column, single_key: bool) -> list[Any]:
    """The column's tests, named ``<model>__<column>__<rule>`` (the names Dagster shows as checks)."""

    def test(kind: str, rule: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        return {kind: {"name": f"{model}__{column.name}__{rule}", **({"arguments": arguments} if arguments else {})}}

    tests: list[Any] = []
    if column.required:
        tests.append(test("not_null", "not_null"))
    if column.unique or (single_key and column.primary_key_position is not None):
        tests.append(test("unique", "unique"))
    if "enum" in column.custom:
        tests.append(test("accepted_values", "allowed_values", {"values": list(column.custom["enum"])}))
    if column.logical_type in ("integer", "number"):
        bounds = {arg: column.options[option] for option, arg in _BOUNDS.items() if option in column.options}
        if bounds:
            tests.append(test("in_range", "in_range", bounds))
    return tests


def model_entry(name: str) -> dict[str, Any]:
    contract = load_contract("lakehouse")
    obj = next(o for o in contract.document.schema_ or [] if o.name == name)
    key = contract.primary_key(name)
    entry: dict[str, Any] = {
        "name": name,
        "description": " ".join((obj.description or "").split()),
        "config": {"meta": {"contract": f"contracts/lakehouse.odcs.yaml#{name}", "contract_version": contract.version}},
    }
    if len(key) > 1:
        unique_key = {"name": f"{name}__primary_key__unique", "arguments": {"columns": list(key)}}
        entry["data_tests"] = [{"unique_key": unique_key}]
    columns = []
    for column in contract.columns(name):
        spec: dict[str, Any] = {"name": column.name, "data_type": column.physical_type}
        if column.description:
            spec["description"] = column.description
        tests = column_tests(name, column, single_key=len(key) == 1)
        if tests:
            spec["data_tests"] = tests
        columns.append(spec)
    entry["columns"] = columns
    return entry


def render() -> str:
    document = {"version": 2, "models": [model_entry(name) for name in GOLD_MODELS]}
    return HEADER + yaml.safe_dump(document, sort_keys=False, width=120, allow_unicode=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cart_lakehouse.dbt_contract",
        description="Write the gold models' dbt tests from contracts/lakehouse.odcs.yaml.",
    )
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if the file is out of date")
    args = parser.parse_args(argv)
    wanted = render()
    current = SCHEMA_FILE.read_text(encoding="utf-8") if SCHEMA_FILE.exists() else ""
    if args.check:
        if current != wanted:
            print(f"{SCHEMA_FILE} is out of date: run python -m cart_lakehouse.dbt_contract", file=sys.stderr)
            return 1
        print(f"{SCHEMA_FILE} agrees with the contract")
        return 0
    SCHEMA_FILE.write_text(wanted, encoding="utf-8")
    print(f"wrote {SCHEMA_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
