"""The file drop's blocking quality gates.

- Each silver table: the contract check of the shared factory (``checks.contract_check``), on the
  set's folder, with the Pandera schema derived from ``contracts/filedrop.odcs.yaml``.
- Each KPI table: its rows of the dates the set touched, against ``contracts/kpis.odcs.yaml``
  (types, ranges, unique keys), and DynamoDB equal to Delta key by key.
- ``order_kpis``: revenue reconciles with silver, to the cent, for every date the set touched.
A failure keeps the set's files in landing (the archive step does not run) and alerts.
"""

from typing import Any

import pyarrow as arrow
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    MetadataValue,
    asset_check,
)

from cart_lakehouse.checks import CheckedTable, contract_check
from cart_lakehouse.checks.schemas import arrow_frame, validate
from cart_lakehouse.filedrop import kpis
from cart_lakehouse.filedrop.assets import KPIS, SILVER, dynamodb_tables
from cart_lakehouse.filedrop.layout import KPI_TABLES, TABLES
from cart_lakehouse.filedrop.layout import SILVER as SILVER_ROOT
from cart_lakehouse.filedrop.partitions import filedrop_sets
from cart_lakehouse.metadata import preview
from cart_lakehouse.resources import AwsResource, LakeResource


def _set_dirs(set_id: str) -> list[str]:
    return [f"set_id={set_id}"]


SILVER_GATES = [
    contract_check(
        CheckedTable(
            SILVER[table],
            table,
            f"{SILVER_ROOT}/{table}",
            contract="filedrop",
            partitions_def=filedrop_sets,
            key_dirs=_set_dirs,
        )
    )
    for table in TABLES
]


def _problems_result(problems: list[str], checked: dict[str, Any]) -> AssetCheckResult:
    return AssetCheckResult(
        passed=not problems,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            **checked,
            "problems": len(problems),
            **({"first_problems": MetadataValue.md("\n".join(f"- {p}" for p in problems[:20]))} if problems else {}),
        },
        description=None if not problems else f"{len(problems)} problems, first: {problems[0]}",
    )


def _kpi_checks(name: str) -> list[AssetChecksDefinition]:
    @asset_check(
        asset=KPIS[name],
        name="contract",
        blocking=True,
        partitions_def=filedrop_sets,
        description=f"The rows of the dates the set touched against contracts/kpis.odcs.yaml#{name} (Pandera).",
    )
    def contract(context: AssetCheckExecutionContext, lake: LakeResource) -> AssetCheckResult:
        the_lake = lake.lake()
        dates = kpis.touched_dates(the_lake, context.partition_key)
        rows: arrow.Table = kpis.read_kpis(the_lake, name, dates, lake.settings())
        result = validate(arrow_frame(rows), name, rows.schema, contract="kpis")
        metadata: dict[str, Any] = {"rows": result.rows, "order_dates": len(dates)}
        if result.failures:
            metadata["failures_by_rule"] = MetadataValue.json(result.failures)
            metadata["sample"] = preview(result.sample)
        if result.type_errors:
            metadata["type_errors"] = MetadataValue.md("\n".join(f"- {e}" for e in result.type_errors))
        return AssetCheckResult(passed=result.passed, severity=AssetCheckSeverity.ERROR, metadata=metadata)

    @asset_check(
        asset=KPIS[name],
        name="dynamodb_matches_delta",
        blocking=True,
        partitions_def=filedrop_sets,
        description="Every row of the dates the set touched is in DynamoDB with the same values, and no other item.",
    )
    def dynamodb_matches_delta(
        context: AssetCheckExecutionContext, lake: LakeResource, aws: AwsResource
    ) -> AssetCheckResult:
        the_lake = lake.lake()
        dates = kpis.touched_dates(the_lake, context.partition_key)
        table_name = dynamodb_tables(aws.settings())[name]
        problems = kpis.dynamodb_mismatches(aws.clients(), the_lake, name, table_name, dates, lake.settings())
        return _problems_result(problems, {"dynamodb_table": table_name, "order_dates": len(dates)})

    return [contract, dynamodb_matches_delta]


@asset_check(
    asset=KPIS["order_kpis"],
    name="revenue_reconciles",
    blocking=True,
    partitions_def=filedrop_sets,
    description=(
        "For every date the set touched: total_revenue equals silver's sold items to the cent, and the "
        "categories' daily_revenue adds up to it."
    ),
)
def revenue_reconciles(context: AssetCheckExecutionContext, lake: LakeResource) -> AssetCheckResult:
    the_lake = lake.lake()
    dates = kpis.touched_dates(the_lake, context.partition_key)
    problems, revenue = kpis.reconcile_revenue(the_lake, dates, lake.settings())
    return _problems_result(
        problems,
        {"order_dates": len(dates), "silver_revenue": MetadataValue.json({str(d): str(v) for d, v in revenue.items()})},
    )


FILEDROP_GATES: list[AssetChecksDefinition] = [
    *SILVER_GATES,
    *(check for name in KPI_TABLES for check in _kpi_checks(name)),
    revenue_reconciles,
]
