"""dbt's tests of the gold run's models, generated from the contracts so the two cannot drift.

``python -m cart_lakehouse.dbt_contract`` rewrites one ``_contract.yml`` per target (``TARGETS``:
a folder of ``dbt_project/models`` and the contract its models are described in); ``--check``
fails when a committed file differs from what its contract gives (the test suite runs the same
comparison). Each rule becomes a dbt test, which Dagster shows as an asset check:

- the required columns of a model → one ``not_null_columns`` (``tests/generic/not_null_columns.sql``),
  which names each column holding nulls;
- a one-column primary key or ``unique`` → ``unique``;
- a composite primary key → ``unique_key`` (``dbt_project/tests/generic/unique_key.sql``);
- the ``enum`` custom property → ``accepted_values``;
- minimum / maximum / exclusive bounds of a model's numbers → one ``columns_in_range``
  (``tests/generic/columns_in_range.sql``), which names each column out of its bounds;
- a ``foreignKey`` relationship (``to: table.column``) → ``relationships`` to that model;
- the schema-level ``scd2`` custom property (``key``, ``from``, ``to``, optional ``current``) →
  ``scd2_valid`` (``tests/generic/scd2_valid.sql``).

Only the rules a contract states become tests: every gold run runs all of them, and each dbt test
is a node with its own overhead, which is why the two rules most columns carry (required, bounds)
are checked once per model rather than once per column (111 tests for the star and marts became 46).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from contracts import Column, ForeignKey, load_contract

MODELS_DIR = Path(__file__).resolve().parents[1] / "dbt_project" / "models"
_BOUNDS = {
    "minimum": "minimum",
    "maximum": "maximum",
    "exclusiveMinimum": "exclusive_minimum",
    "exclusiveMaximum": "exclusive_maximum",
}
# the scd2 custom property's keys -> scd2_valid's arguments (``from`` is a Jinja keyword)
_SCD2_ARGUMENTS = {"key": "key", "from": "valid_from", "to": "valid_to", "current": "current"}


@dataclass(frozen=True)
class Target:
    """One generated schema file: the models of a folder of the dbt project, from one contract."""

    folder: str
    contract: str
    models: tuple[str, ...]

    @property
    def path(self) -> Path:
        return MODELS_DIR / self.folder / "_contract.yml"

    @property
    def header(self) -> str:
        return (
            f"# Generated from contracts/{self.contract}.odcs.yaml by `python -m cart_lakehouse.dbt_contract`:"
            " do not edit.\n"
        )


TARGETS = (
    Target("gold", "lakehouse", ("sales_hourly", "sales_by_category_daily", "buyer_daily")),
    Target("star", "analytics", ("fact_purchases", "dim_buyer", "dim_product", "dim_date")),
    Target("marts", "analytics", ("sales_performance", "items_category_performance")),
)


def column_tests(model: str, column: Column, single_key: bool, foreign_keys: tuple[ForeignKey, ...] = ()) -> list[Any]:
    """The column's tests, named ``<model>__<column>__<rule>`` (the names Dagster shows as checks)."""

    def test(kind: str, rule: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        return {kind: {"name": f"{model}__{column.name}__{rule}", **({"arguments": arguments} if arguments else {})}}

    tests: list[Any] = []
    if column.unique or (single_key and column.primary_key_position is not None):
        tests.append(test("unique", "unique"))
    if "enum" in column.custom:
        tests.append(test("accepted_values", "allowed_values", {"values": list(column.custom["enum"])}))
    for key in foreign_keys:
        if key.table == model and key.column == column.name:
            arguments = {"to": f"ref('{key.target_table}')", "field": key.target_column}
            tests.append(test("relationships", "relationship", arguments))
    return tests


def bounds(column: Column) -> dict[str, Any]:
    """A numeric column's bounds as ``columns_in_range`` takes them (empty: unbounded or not a number)."""
    if column.logical_type not in ("integer", "number"):
        return {}
    return {arg: column.options[option] for option, arg in _BOUNDS.items() if option in column.options}


def model_rule_tests(model: str, columns: Collection[Column]) -> list[Any]:
    """The rules checked once per model: required columns, and numeric bounds."""
    tests: list[Any] = []
    required = [c.name for c in columns if c.required]
    if required:
        tests.append({"not_null_columns": {"name": f"{model}__required__not_null", "arguments": {"columns": required}}})
    ranges = {c.name: b for c in columns if (b := bounds(c))}
    if ranges:
        tests.append({"columns_in_range": {"name": f"{model}__bounds__in_range", "arguments": {"bounds": ranges}}})
    return tests


def scd2_test(model: str, spec: Any, columns: Collection[str]) -> dict[str, Any]:
    """``scd2_valid`` from the ``scd2`` custom property, whose values must name ``columns``."""
    if (
        not isinstance(spec, dict)
        or not {"key", "from", "to"} <= spec.keys()
        or not spec.keys() <= _SCD2_ARGUMENTS.keys()
    ):
        raise ValueError(f"{model}: scd2 needs key, from, to (and optionally current), got {spec!r}")
    unknown = sorted(str(v) for v in spec.values() if v not in columns)
    if unknown:
        raise ValueError(f"{model}: scd2 names columns the model does not have: {', '.join(unknown)}")
    arguments = {_SCD2_ARGUMENTS[k]: v for k, v in spec.items()}
    return {"scd2_valid": {"name": f"{model}__scd2__valid", "arguments": arguments}}


def model_entry(name: str, contract_name: str = "lakehouse") -> dict[str, Any]:
    contract = load_contract(contract_name)
    obj = next((o for o in contract.document.schema_ or [] if o.name == name), None)
    if obj is None:
        raise KeyError(f"contract {contract_name!r} has no schema object {name!r}")
    key = contract.primary_key(name)
    entry: dict[str, Any] = {
        "name": name,
        "description": " ".join((obj.description or "").split()),
        "config": {
            "meta": {"contract": f"contracts/{contract_name}.odcs.yaml#{name}", "contract_version": contract.version}
        },
    }
    model_tests: list[Any] = model_rule_tests(name, contract.columns(name))
    if len(key) > 1:
        model_tests.append(
            {"unique_key": {"name": f"{name}__primary_key__unique", "arguments": {"columns": list(key)}}}
        )
    custom = {c.property: c.value for c in obj.customProperties or [] if c.property}
    if "scd2" in custom:
        model_tests.append(scd2_test(name, custom["scd2"], [c.name for c in contract.columns(name)]))
    if model_tests:
        entry["data_tests"] = model_tests
    foreign_keys = contract.foreign_keys()
    columns = []
    for column in contract.columns(name):
        spec: dict[str, Any] = {"name": column.name, "data_type": column.physical_type}
        if column.description:
            spec["description"] = column.description
        tests = column_tests(name, column, single_key=len(key) == 1, foreign_keys=foreign_keys)
        if tests:
            spec["data_tests"] = tests
        columns.append(spec)
    entry["columns"] = columns
    return entry


def render(target: Target = TARGETS[0]) -> str:
    document = {"version": 2, "models": [model_entry(name, target.contract) for name in target.models]}
    return target.header + yaml.safe_dump(document, sort_keys=False, width=120, allow_unicode=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cart_lakehouse.dbt_contract",
        description="Write the gold run's dbt tests (dbt_project/models/*/_contract.yml) from the contracts.",
    )
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if a file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for target in TARGETS:
        wanted = render(target)
        current = target.path.read_text(encoding="utf-8") if target.path.exists() else ""
        if current == wanted:
            print(f"{target.path} agrees with contracts/{target.contract}.odcs.yaml")
        elif args.check:
            stale.append(target)
            print(f"{target.path} is out of date: run python -m cart_lakehouse.dbt_contract", file=sys.stderr)
        else:
            target.path.parent.mkdir(parents=True, exist_ok=True)
            target.path.write_text(wanted, encoding="utf-8")
            print(f"wrote {target.path}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
