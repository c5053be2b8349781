"""Where the KPI rows are kept: two Delta Lake tables in the lake, pushed to two DynamoDB tables.

Delta (``kpis/category_kpis``, ``kpis/order_kpis`` under the lake root, with the ``deltalake``
package, no Spark) is the record; DynamoDB serves the same rows by key. Both are written so that a
run can be repeated: the Delta merge upserts on the key and leaves an unchanged row alone, the
DynamoDB push puts whole items.

Concurrent writers on S3: delta-rs 1.x commits a version by creating its ``_delta_log`` entry with
a conditional put (``If-None-Match: *``), which S3 has honoured since 2024 (moto too). A writer that
loses the race gets ``CommitFailedError`` instead of overwriting the other's commit; the merge is
then recomputed on the new version. So no lock table is needed (delta-rs 1.0 removed its DynamoDB
lock store); ``conditional_put`` is set explicitly so that a change of the library's default cannot
quietly make commits unsafe.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

import pyarrow as arrow
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError

from cart_aws.aws import AwsClients
from cart_aws.settings import AwsSettings, aws_settings
from cart_lakehouse.checks.schemas import arrow_schema
from cart_lakehouse.filedrop.layout import KPI_TABLES, kpi_table
from cart_lakehouse.lake import Lake
from contracts import load_contract

KPI_KEYS: dict[str, tuple[str, ...]] = {name: load_contract("kpis").primary_key(name) for name in KPI_TABLES}
DYNAMODB_MAX_BATCH = 25  # BatchWriteItem's limit
PUSH_RETRIES = 3  # the seeds' rule: unprocessed items are retried up to 3 times
MERGE_ATTEMPTS = 3  # a merge that lost a commit race is recomputed on the new version
_THROTTLED = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
}


# --- Delta ---------------------------------------------------------------------------------------


def storage_options(lake: Lake, aws: AwsSettings | None = None) -> dict[str, str]:
    """What delta-rs needs to reach the lake: nothing for a local folder; for S3 the region, the
    endpoint override (plain HTTP allowed) and, against an emulator without credentials in the
    environment, dummy ones (as ``Lake.open`` gives pyarrow)."""
    if lake.is_local:
        return {}
    aws = aws or aws_settings()
    options = {"AWS_REGION": aws.aws_region, "conditional_put": "etag"}
    if aws.aws_endpoint_url:
        options["AWS_ENDPOINT_URL"] = aws.aws_endpoint_url
        if aws.aws_endpoint_url.startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
        if aws.is_emulated and not os.environ.get("AWS_ACCESS_KEY_ID"):
            options.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    return options


@dataclass(frozen=True)
class MergeStats:
    """What one merge into a KPI table did (``committed`` False: nothing differed, no new version)."""

    table: str
    inserted: int
    updated: int
    deleted: int
    unchanged: int
    version: int
    committed: bool


def exactly(rows: arrow.Table, name: str) -> arrow.Table:
    """The KPI table's columns in the contract's order and types (non-null where it says required)."""
    schema = arrow_schema(name, contract="kpis")
    return arrow.Table.from_arrays([rows.column(f.name).cast(f.type) for f in schema], schema=schema)


def _in_dates(column: str, dates: Iterable[date]) -> str:
    days = ", ".join(f"CAST('{d.isoformat()}' AS DATE)" for d in sorted(set(dates)))
    return f"{column} IN ({days})"


def _values(row: dict[str, Any], name: str) -> tuple[Any, ...]:
    """A row's KPI values: what decides whether a stored row changes (not who wrote it)."""
    return tuple(v for k, v in row.items() if k not in KPI_KEYS[name] and k != "updated_by_set")


def merge_kpis(
    lake: Lake, name: str, rows: arrow.Table, dates: Sequence[date] | None = None, aws: AwsSettings | None = None
) -> MergeStats:
    """Upsert ``rows`` into the Delta table ``name`` on its key, creating the table on first write.

    A row whose KPI values equal the stored ones is left as it is (with the set that wrote it), so a
    re-dropped set reports 0 updated and commits nothing. With ``dates``, ``rows`` are the whole
    content of those dates: a stored row of those dates not among them is deleted (a category that
    lost its last item there, a day whose orders all moved)."""
    rows = exactly(rows, name)
    key = KPI_KEYS[name]
    uri, options = lake.uri(kpi_table(name)), storage_options(lake, aws)
    for attempt in range(1, MERGE_ATTEMPTS + 1):
        if not DeltaTable.is_deltatable(uri, storage_options=options):
            try:
                write_deltalake(uri, rows, mode="error", name=name, storage_options=options)
            except Exception:  # another writer may have created it first: then merge into theirs
                if not DeltaTable.is_deltatable(uri, storage_options=options):
                    raise
            else:
                table = DeltaTable(uri, storage_options=options)
                return MergeStats(name, rows.num_rows, 0, 0, 0, table.version(), True)
        table = DeltaTable(uri, storage_options=options)
        days = set(rows.column("order_date").to_pylist()) | set(dates or ())
        stored = {tuple(r[k] for k in key): _values(r, name) for r in _read(table, name, days).to_pylist()}
        incoming = {tuple(r[k] for k in key): _values(r, name) for r in rows.to_pylist()}
        changed = sum(1 for k, v in incoming.items() if k in stored and stored[k] != v)
        new = len(incoming.keys() - stored.keys())
        gone = len(stored.keys() - incoming.keys()) if dates is not None else 0
        if not (changed or new or gone):
            return MergeStats(name, 0, 0, 0, len(incoming), table.version(), False)
        merger = (
            table.merge(
                rows,
                " AND ".join(f"t.{k} = s.{k}" for k in key),
                source_alias="s",
                target_alias="t",
            )
            .when_matched_update_all(
                predicate=" OR ".join(
                    f"(t.{c} IS DISTINCT FROM s.{c})"
                    for c in rows.column_names
                    if c not in key and c != "updated_by_set"
                )
            )
            .when_not_matched_insert_all()
        )
        if dates:
            merger = merger.when_not_matched_by_source_delete(predicate=_in_dates("t.order_date", dates))
        try:
            metrics = merger.execute()
        except CommitFailedError:
            if attempt == MERGE_ATTEMPTS:
                raise
            continue
        inserted, updated = int(metrics["num_target_rows_inserted"]), int(metrics["num_target_rows_updated"])
        return MergeStats(
            name,
            inserted,
            updated,
            int(metrics["num_target_rows_deleted"]),
            int(metrics["num_source_rows"]) - inserted - updated,
            table.version(),
            True,
        )
    raise AssertionError("unreachable")


def _read(table: DeltaTable, name: str, days: Iterable[date] | None) -> arrow.Table:
    """A Delta table's rows of ``days``, or all of them."""
    if days is None:
        return exactly(table.to_pyarrow_table(), name)
    wanted = sorted(set(days))
    if not wanted:
        return arrow_schema(name, contract="kpis").empty_table()
    return exactly(table.to_pyarrow_table(filters=[("order_date", "in", wanted)]), name)


def read_kpis(
    lake: Lake, name: str, dates: Sequence[date] | None = None, aws: AwsSettings | None = None
) -> arrow.Table:
    """The Delta table ``name`` (its rows of ``dates``, or all), sorted by key, in the contract's
    schema; empty when the table does not exist yet."""
    uri, options = lake.uri(kpi_table(name)), storage_options(lake, aws)
    if not DeltaTable.is_deltatable(uri, storage_options=options):
        return arrow_schema(name, contract="kpis").empty_table()
    rows = _read(DeltaTable(uri, storage_options=options), name, dates)
    return rows.sort_by([(k, "ascending") for k in KPI_KEYS[name]])


# --- DynamoDB ------------------------------------------------------------------------------------

WriteBatch = Callable[[str, list[dict[str, Any]]], list[dict[str, Any]]]
"""One BatchWriteItem: (table, write requests) -> the requests DynamoDB left unprocessed."""

_SERIALIZE = TypeSerializer().serialize
_DESERIALIZE = TypeDeserializer().deserialize


class KpiPushError(RuntimeError):
    """Items DynamoDB would not take after every retry; the KPI tables disagree until a re-run."""

    def __init__(self, table_name: str, keys: list[dict[str, Any]], total: int, reason: str) -> None:
        self.table_name, self.keys = table_name, keys
        shown = "; ".join(", ".join(f"{k}={v}" for k, v in key.items()) for key in keys[:10])
        more = f" and {len(keys) - 10} more" if len(keys) > 10 else ""
        super().__init__(
            f"DynamoDB {table_name}: {len(keys)} of {total} KPI items not written after {PUSH_RETRIES} retries "
            f"({reason}): {shown}{more}. Delta holds them; re-run the set's KPI step to push again."
        )


@dataclass
class PushStats:
    table_name: str
    items: int = 0  # put
    deleted: int = 0  # delete requests for keys of the dates that have no row any more
    batches: int = 0  # BatchWriteItem calls, retries included
    retried: int = 0  # write requests sent again (unprocessed or throttled)
    seconds: float = 0.0
    retry_reasons: list[str] = field(default_factory=list)


def as_item(row: dict[str, Any]) -> dict[str, Any]:
    """A KPI row as DynamoDB stores it: dates as 'YYYY-MM-DD', numbers as Decimal (a float's
    shortest repr, so the item reads back equal to the Delta row), strings as they are."""
    out: dict[str, Any] = {}
    for column, value in row.items():
        if isinstance(value, date):
            out[column] = value.isoformat()
        elif isinstance(value, bool) or value is None:
            raise ValueError(f"KPI column {column}: {value!r} has no DynamoDB form here")
        elif isinstance(value, int):
            out[column] = Decimal(value)
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise ValueError(f"KPI column {column}: {value!r} is not a number DynamoDB can store")
            out[column] = Decimal(repr(value))
        else:
            out[column] = value
    return out


def _dynamodb_write(clients: AwsClients) -> WriteBatch:
    def write(table_name: str, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        answer = clients.dynamodb.batch_write_item(RequestItems={table_name: requests})  # type: ignore[dict-item]
        return list(answer.get("UnprocessedItems", {}).get(table_name, []))  # type: ignore[arg-type]

    return write


def _request_key(request: dict[str, Any]) -> dict[str, Any]:
    if "PutRequest" in request:
        item = request["PutRequest"]["Item"]
        return {k: _DESERIALIZE(v) for k, v in item.items() if k in ("category", "order_date")}
    return {k: _DESERIALIZE(v) for k, v in request["DeleteRequest"]["Key"].items()}


def push_kpis(
    clients: AwsClients,
    table_name: str,
    rows: arrow.Table,
    dates: Sequence[date] | None = None,
    *,
    write_batch: WriteBatch | None = None,
    backoff_seconds: float = 0.1,
) -> PushStats:
    """Put ``rows`` (a KPI table's rows) into DynamoDB ``table_name`` with BatchWriteItem, 25 at a
    time. Unprocessed items, and a batch DynamoDB throttles whole, are sent again up to 3 times
    with exponential backoff; if some are still not written, ``KpiPushError`` names them (after
    every batch has been tried). With ``dates``, ``rows`` are the whole content of those dates and
    the keys of those dates without a row are deleted (for category_kpis: every category the
    contract allows), so DynamoDB keeps no row Delta no longer has. Writing the same rows again
    leaves the items equal."""
    started = time.monotonic()
    write = write_batch or _dynamodb_write(clients)
    stats = PushStats(table_name)
    requests: list[dict[str, Any]] = [
        {"PutRequest": {"Item": {k: _SERIALIZE(v) for k, v in as_item(r).items()}}} for r in rows.to_pylist()
    ]
    stats.items = len(requests)
    for key in _absent_keys(rows, dates):
        requests.append({"DeleteRequest": {"Key": {k: _SERIALIZE(v) for k, v in key.items()}}})
    stats.deleted = len(requests) - stats.items
    failed: list[dict[str, Any]] = []
    reason = failure = ""
    for start in range(0, len(requests), DYNAMODB_MAX_BATCH):
        pending = requests[start : start + DYNAMODB_MAX_BATCH]
        for attempt in range(PUSH_RETRIES + 1):
            if attempt:
                stats.retried += len(pending)
                stats.retry_reasons.append(reason)
                time.sleep(backoff_seconds * 2 ** (attempt - 1) * random.uniform(0.5, 1.0))  # jitter
            stats.batches += 1
            try:
                pending = write(table_name, pending)
                reason = "left unprocessed by DynamoDB"
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code not in _THROTTLED:
                    raise
                reason = f"{code}: {exc.response.get('Error', {}).get('Message', '')}"
            except BotoCoreError as exc:  # connection lost or timed out: the batch may be retried whole
                reason = f"{type(exc).__name__}: {exc}"
            if not pending:
                break
        if pending:
            failed.extend(pending)
            failure = reason
    stats.seconds = time.monotonic() - started
    if failed:
        raise KpiPushError(table_name, [_request_key(r) for r in failed], len(requests), failure)
    return stats


def _absent_keys(rows: arrow.Table, dates: Sequence[date] | None) -> list[dict[str, Any]]:
    if not dates:
        return []
    present = {
        tuple(as_item(r).values())
        for r in rows.select([c for c in ("category", "order_date") if c in rows.column_names]).to_pylist()
    }
    days = sorted({d.isoformat() for d in dates})
    if "category" not in rows.column_names:
        return [{"order_date": d} for d in days if (d,) not in present]
    categories = load_contract("kpis").column("category", "category_kpis").custom["enum"]
    return [{"category": c, "order_date": d} for c in categories for d in days if (c, d) not in present]


def read_items(clients: AwsClients, table_name: str) -> list[dict[str, Any]]:
    """Every item of a KPI table (a paginated Scan: these tables hold one item per day and category),
    numbers as Decimal."""
    paginator = clients.dynamodb.get_paginator("scan")
    return [
        {k: _DESERIALIZE(v) for k, v in item.items()}
        for page in paginator.paginate(TableName=table_name, ConsistentRead=True)
        for item in page.get("Items", [])
    ]
