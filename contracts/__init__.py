"""Data contracts (Open Data Contract Standard v3): the one source of truth for schemas and rules.

``load_contract("purchases")`` parses ``contracts/purchases.odcs.yaml`` once; ``contracts.models``
derives pydantic models from it, and the lakehouse derives its quality checks the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml
from open_data_contract_standard.model import OpenDataContractStandard, SchemaProperty


@dataclass(frozen=True)
class Column:
    """One property of a contract's schema object, with the options the code needs."""

    name: str
    logical_type: str
    physical_type: str
    required: bool
    unique: bool
    primary_key_position: int | None
    description: str
    options: dict[str, Any]
    custom: dict[str, Any]
    examples: tuple[Any, ...]

    @property
    def source(self) -> str:
        """Who sets the value: ``client`` (the API caller) or ``system`` (the pipeline)."""
        return str(self.custom.get("source", "system"))

    @classmethod
    def from_property(cls, prop: SchemaProperty) -> Column:
        if not prop.name or not prop.logicalType:
            raise ValueError(f"contract property {prop!r} needs a name and a logicalType")
        return cls(
            name=prop.name,
            logical_type=prop.logicalType,
            physical_type=prop.physicalType or prop.logicalType,
            required=bool(prop.required),
            unique=bool(prop.unique),
            primary_key_position=(prop.primaryKeyPosition or 1) if prop.primaryKey else None,
            description=" ".join((prop.description or "").split()),
            options=dict(prop.logicalTypeOptions or {}),
            custom={c.property: c.value for c in prop.customProperties or [] if c.property},
            examples=tuple(prop.examples or ()),
        )


@dataclass(frozen=True)
class ForeignKey:
    """A relationship of type foreignKey: ``table.column`` values must exist in ``target``."""

    table: str
    column: str
    target_table: str
    target_column: str

    @property
    def target(self) -> str:
        return f"{self.target_table}.{self.target_column}"

    @property
    def rule(self) -> str:
        return f"{self.table}.{self.column} -> {self.target}"


@dataclass(frozen=True)
class Contract:
    name: str
    version: str
    document: OpenDataContractStandard

    def columns(self, schema_object: str | None = None) -> tuple[Column, ...]:
        """The columns of one schema object (the contract's first one by default)."""
        objects = self.document.schema_ or []
        for obj in objects:
            if schema_object is None or obj.name == schema_object:
                return tuple(Column.from_property(p) for p in obj.properties or [])
        raise KeyError(f"contract {self.name!r} has no schema object {schema_object!r}")

    def primary_key(self, schema_object: str | None = None) -> tuple[str, ...]:
        """The columns that identify a row, in key order."""
        keyed = [c for c in self.columns(schema_object) if c.primary_key_position is not None]
        return tuple(c.name for c in sorted(keyed, key=lambda c: c.primary_key_position or 0))

    def foreign_keys(self) -> tuple[ForeignKey, ...]:
        """Every property's ODCS ``relationships`` of type foreignKey (``to: table.column``)."""
        found = []
        for obj in self.document.schema_ or []:
            for prop in obj.properties or []:
                for rel in prop.relationships or []:
                    if rel.type == "foreignKey" and isinstance(rel.to, str) and obj.name and prop.name:
                        target_table, target_column = rel.to.split(".", 1)
                        found.append(ForeignKey(obj.name, prop.name, target_table, target_column))
        return tuple(found)

    def column(self, name: str, schema_object: str | None = None) -> Column:
        for col in self.columns(schema_object):
            if col.name == name:
                return col
        raise KeyError(f"contract {self.name!r} has no column {name!r}")


def contract_text(name: str) -> str:
    return resources.files(__name__).joinpath(f"{name}.odcs.yaml").read_text(encoding="utf-8")


@cache
def load_contract(name: str) -> Contract:
    """Parse and validate ``contracts/<name>.odcs.yaml`` (cached: contracts are read once)."""
    document = OpenDataContractStandard(**yaml.safe_load(contract_text(name)))
    if not document.version:
        raise ValueError(f"contract {name!r} has no version")
    return Contract(name=name, version=document.version, document=document)
