"""The Glue Data Catalog: tables of the lake and their partitions, so Athena (or Spark, Trino)
can query them. Columns come from the contracts; every call is idempotent (create or update)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import ClientError

from contracts import load_contract

if TYPE_CHECKING:
    from mypy_boto3_glue import GlueClient

FORMATS: dict[str, dict[str, Any]] = {
    "parquet": {
        "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
        "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
        "SerdeInfo": {"SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"},
    },
    "json": {
        "InputFormat": "org.apache.hadoop.mapred.TextInputFormat",
        "OutputFormat": "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
        "SerdeInfo": {"SerializationLibrary": "org.openx.data.jsonserde.JsonSerDe"},
    },
}
HIVE_PARTITIONS = ("year", "month", "day", "hour")


@dataclass(frozen=True)
class CatalogTable:
    """A lake table as the catalog sees it."""

    name: str  # Glue table name, e.g. "silver_purchases"
    contract_table: str  # the schema object in the contract
    location: str  # the table's root in the lake (s3://... in production)
    partition_keys: tuple[str, ...] = HIVE_PARTITIONS
    format: Literal["parquet", "json"] = "parquet"
    contract: str = "lakehouse"
    description: str = ""

    def columns(self) -> list[dict[str, str]]:
        doc = load_contract(self.contract)
        return [
            {"Name": c.name, "Type": hive_type(c.physical_type), "Comment": c.description[:255]}
            for c in doc.columns(self.contract_table)
            if c.name not in self.partition_keys
        ]

    def table_input(self) -> dict[str, Any]:
        return {
            "Name": self.name,
            "Description": self.description or load_contract(self.contract).document.description.purpose or "",  # type: ignore[union-attr]
            "TableType": "EXTERNAL_TABLE",
            "Parameters": {
                "classification": self.format,
                "contract": f"{self.contract}.{self.contract_table}",
                "contract_version": load_contract(self.contract).version,
            },
            "PartitionKeys": [{"Name": k, "Type": "string"} for k in self.partition_keys],
            "StorageDescriptor": {
                "Columns": self.columns(),
                "Location": self.location.rstrip("/") + "/",
                **FORMATS[self.format],
            },
        }


def hive_type(physical_type: str) -> str:
    """The Hive/Athena type of a contract physicalType (int, bigint, decimal(p,s), ...)."""
    known = {"string", "int", "bigint", "double", "boolean", "date", "timestamp"}
    if physical_type in known or physical_type.startswith("decimal("):
        return physical_type
    raise ValueError(f"physicalType {physical_type!r} has no Hive type")


@dataclass(frozen=True)
class Registration:
    table: str
    action: str  # created, updated, unchanged
    partitions_added: int


class GlueCatalog:
    def __init__(self, glue: GlueClient, database: str) -> None:
        self.glue = glue
        self.database = database

    def register(self, table: CatalogTable, partitions: Sequence[Sequence[str]] = ()) -> Registration:
        """Create or update the table, then add the partitions it does not have yet."""
        wanted = table.table_input()
        try:
            current = self.glue.get_table(DatabaseName=self.database, Name=table.name)["Table"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "EntityNotFoundException":
                raise
            self.glue.create_table(DatabaseName=self.database, TableInput=wanted)  # type: ignore[arg-type]
            action = "created"
        else:
            same = (
                current.get("StorageDescriptor", {}).get("Columns") == wanted["StorageDescriptor"]["Columns"]
                and current.get("PartitionKeys") == wanted["PartitionKeys"]
                and current.get("Parameters") == wanted["Parameters"]
                and current.get("StorageDescriptor", {}).get("Location") == wanted["StorageDescriptor"]["Location"]
            )
            if not same:
                self.glue.update_table(DatabaseName=self.database, TableInput=wanted)  # type: ignore[arg-type]
            action = "unchanged" if same else "updated"
        added = self.add_partitions(table, partitions)
        return Registration(table.name, action, added)

    def add_partitions(self, table: CatalogTable, partitions: Sequence[Sequence[str]]) -> int:
        if not partitions:
            return 0
        existing = {tuple(p) for p in self.partition_values(table.name)}
        new = [tuple(p) for p in dict.fromkeys(tuple(p) for p in partitions) if tuple(p) not in existing]
        storage = table.table_input()["StorageDescriptor"]
        for start in range(0, len(new), 100):  # BatchCreatePartition takes 100 at a time
            chunk = new[start : start + 100]
            inputs = [
                {
                    "Values": list(values),
                    "StorageDescriptor": {
                        **storage,
                        "Location": storage["Location"]
                        + "/".join(f"{k}={v}" for k, v in zip(table.partition_keys, values, strict=True))
                        + "/",
                    },
                }
                for values in chunk
            ]
            answer = self.glue.batch_create_partition(
                DatabaseName=self.database,
                TableName=table.name,
                PartitionInputList=inputs,  # type: ignore[arg-type]
            )
            errors = [
                e
                for e in answer.get("Errors", [])
                if e.get("ErrorDetail", {}).get("ErrorCode") != "AlreadyExistsException"
            ]
            if errors:
                raise RuntimeError(f"Glue refused partitions of {table.name}: {errors[:3]}")
        return len(new)

    def partition_values(self, table: str) -> list[list[str]]:
        paginator = self.glue.get_paginator("get_partitions")
        return [
            list(p["Values"])
            for page in paginator.paginate(DatabaseName=self.database, TableName=table)
            for p in page.get("Partitions", [])
        ]
