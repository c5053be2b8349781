"""Blocking quality gates: one factory turns a contract's table into a Dagster asset check.

``contract_check(CheckedTable(...))`` reads the partition window of a table from the lake, checks
its Arrow types against the contract's physical types and its values with the Pandera schema
derived from the same contract, and reports the failing-row count, the failures per rule and a
sample. Severity ERROR and ``blocking=True``: a failure stops what depends on the table.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as arrow
import pyarrow.dataset as ds
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetKey,
    MetadataValue,
    PartitionsDefinition,
    TimeWindowPartitionsDefinition,
    asset_check,
)

from cart_lakehouse.checks.schemas import arrow_frame, validate
from cart_lakehouse.lake import Lake
from cart_lakehouse.metadata import preview
from cart_lakehouse.partitions import Hour, hourly_partitions, hours_between
from cart_lakehouse.resources import LakeResource
from cart_lakehouse.timings import Timings
from contracts import load_contract


def hour_dirs(hours: Sequence[Hour]) -> list[str]:
    """Hourly tables: ``year=/month=/day=/hour=`` per hour."""
    return [h.path for h in hours]


def day_dirs(hours: Sequence[Hour]) -> list[str]:
    """Daily tables: ``day=YYYY-MM-DD`` per day the hours touch."""
    return sorted({f"day={h.start:%Y-%m-%d}" for h in hours})


@dataclass(frozen=True)
class CheckedTable:
    """A table of the lake checked against its contract."""

    asset_key: AssetKey
    table: str  # the schema object in the contract
    location: str  # lake-relative folder of the table
    partition_dirs: Callable[[Sequence[Hour]], list[str]] = hour_dirs
    contract: str = "lakehouse"
    extra_columns: tuple[str, ...] = field(default=())  # written by the engine, not in the contract
    partitions_def: PartitionsDefinition = hourly_partitions
    # the folders of a partition that is not a time window (a file set: ``set_id=<key>``)
    key_dirs: Callable[[str], list[str]] | None = None

    def dirs(self, context: AssetCheckExecutionContext) -> list[str]:
        """The table's folders holding the partition (or window) the check runs for."""
        if isinstance(self.partitions_def, TimeWindowPartitionsDefinition):
            window = context.partition_time_window
            return self.partition_dirs(hours_between(window.start, window.end))
        if self.key_dirs is None:
            raise ValueError(f"{self.asset_key.to_user_string()}: key_dirs is needed for non-time partitions")
        return [d for key in context.partition_keys for d in self.key_dirs(key)]


def read_window(lake: Lake, location: str, dirs: Sequence[str]) -> "arrow.Table | None":
    """Every Parquet file under the given partition folders (None: the window has no files)."""
    files = [f for d in dirs for f in lake.files(f"{location}/{d}") if f.endswith(".parquet")]
    if not files:
        return None
    dataset = ds.dataset([lake.path(f) for f in files], filesystem=lake.fs, format="parquet")
    return dataset.to_table()


def contract_check(spec: CheckedTable) -> AssetChecksDefinition:
    contract = load_contract(spec.contract)
    columns = [c.name for c in contract.columns(spec.table)]
    key = contract.primary_key(spec.table)

    @asset_check(
        asset=spec.asset_key,
        name="contract",
        blocking=True,
        partitions_def=spec.partitions_def,
        description=(
            f"Types, nullability, ranges, patterns, allowed values"
            f"{' and uniqueness of ' + ', '.join(key) if key else ''} from the {spec.contract} contract "
            f"({spec.table}, version {contract.version}), checked with Pandera on the partition's data."
        ),
        metadata={"contract": f"contracts/{spec.contract}.odcs.yaml#{spec.table}"},
    )
    def _check(context: AssetCheckExecutionContext, lake: LakeResource) -> AssetCheckResult:
        the_lake = lake.lake()
        timings = Timings()
        with timings.span("read window"):
            table = read_window(the_lake, spec.location, spec.dirs(context))
        if table is None:
            return AssetCheckResult(
                passed=True, severity=AssetCheckSeverity.ERROR, metadata={"rows": 0, "note": "no data in the window"}
            )
        with timings.span("to pandas"):
            frame = arrow_frame(table.drop_columns([c for c in spec.extra_columns if c in table.column_names]))
        schema = arrow.schema([f for f in table.schema if f.name not in spec.extra_columns])
        with timings.span("validate"):
            result = validate(frame, spec.table, schema, contract=spec.contract)
        metadata: dict[str, Any] = {
            "rows": result.rows,
            "failed_rows": result.failed_rows if result.failures else 0,
            "rules": len(columns),
            **timings.metadata(),
        }
        if result.type_errors:
            metadata["type_errors"] = MetadataValue.md("\n".join(f"- {e}" for e in result.type_errors))
        if result.failures:
            metadata["failures_by_rule"] = MetadataValue.json(result.failures)
            metadata["sample"] = preview(result.sample)
        return AssetCheckResult(
            passed=result.passed,
            severity=AssetCheckSeverity.ERROR,
            metadata=metadata,
            description=None if result.passed else _summary(result.failures, result.type_errors),
        )

    return _check


def _summary(failures: dict[str, int], type_errors: Sequence[str]) -> str:
    parts = [f"{rule} ({n})" for rule, n in sorted(failures.items(), key=lambda kv: -kv[1])[:5]]
    return "; ".join(list(type_errors)[:3] + parts)
