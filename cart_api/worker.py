"""Stores queued purchases in DynamoDB: the logic shared by the Lambda handler and the local runner.

For a batch of SQS records the worker:

* validates each body against the purchases contract; a message that breaks it can never be
  stored, so it goes straight to the dead-letter queue with the reason as message attributes;
* writes the valid ones with ``BatchWriteItem`` (one item per ``purchase_id``, so a message
  delivered twice leaves one identical item), retrying unprocessed items with backoff;
* reports a record that could not be stored for a transient reason as failed, so SQS delivers
  it again; on its last allowed receive (``maxReceiveCount``) it forwards it to the DLQ itself,
  with the reason, instead of letting SQS move it there without one.

Only records that were stored or forwarded count as handled; everything else is retried.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from cart_api.models import Purchase
from cart_api.settings import Settings
from cart_api.store import to_item
from cart_aws.aws import AwsClients
from cart_aws.metrics import CloudWatchMetrics, MetricsSink, NoMetrics

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger(__name__)

DYNAMODB_MAX_BATCH = 25
MAX_REASON_CHARS = 1_000


@dataclass(frozen=True)
class SqsRecord:
    """One SQS message, from ``ReceiveMessage`` or a Lambda event."""

    message_id: str
    body: str
    receive_count: int = 1
    attributes: dict[str, dict[str, str]] = field(default_factory=dict)  # SQS API shape
    receipt_handle: str | None = None

    @classmethod
    def from_sqs(cls, message: Any) -> SqsRecord:
        return cls(
            message_id=message["MessageId"],
            body=message["Body"],
            receive_count=int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1")),
            attributes={
                name: {k: v for k, v in value.items() if k in ("DataType", "StringValue")}
                for name, value in message.get("MessageAttributes", {}).items()
                if value.get("DataType", "").startswith(("String", "Number"))
            },
            receipt_handle=message.get("ReceiptHandle"),
        )

    @classmethod
    def from_lambda(cls, record: dict[str, Any]) -> SqsRecord:
        return cls(
            message_id=record["messageId"],
            body=record["body"],
            receive_count=int(record.get("attributes", {}).get("ApproximateReceiveCount", "1")),
            attributes={
                name: {"DataType": value["dataType"], "StringValue": value["stringValue"]}
                for name, value in record.get("messageAttributes", {}).items()
                if "stringValue" in value
            },
            receipt_handle=record.get("receiptHandle"),
        )


@dataclass
class BatchResult:
    stored: list[str] = field(default_factory=list)  # message ids now in DynamoDB
    dead_lettered: list[tuple[str, str]] = field(default_factory=list)  # (message id, reason)
    retry: list[tuple[str, str]] = field(default_factory=list)  # (message id, reason)

    @property
    def handled(self) -> list[str]:
        """Message ids that may be deleted from the queue."""
        return self.stored + [mid for mid, _ in self.dead_lettered]


class PurchaseWorker:
    def __init__(
        self,
        dynamodb: DynamoDBClient,
        table: str,
        sqs: SQSClient,
        dlq_url: str | Callable[[], str],
        *,
        max_receive_count: int,
        source_queue: str,
        ingest_shards: int,
        write_attempts: int = 5,
        backoff_seconds: float = 0.05,
        metrics: MetricsSink | None = None,
    ) -> None:
        self._ddb = dynamodb
        self._table = table
        self._sqs = sqs
        self._dlq = dlq_url
        self.max_receive_count = max_receive_count
        self.source_queue = source_queue
        self.ingest_shards = ingest_shards
        self.write_attempts = write_attempts
        self.backoff_seconds = backoff_seconds
        self.metrics = metrics or NoMetrics()

    @property
    def dlq_url(self) -> str:
        if callable(self._dlq):
            self._dlq = self._dlq()
        return self._dlq

    def process(self, records: Sequence[SqsRecord]) -> BatchResult:
        result = BatchResult()
        invalid: list[tuple[SqsRecord, str, str]] = []
        by_purchase: dict[str, list[SqsRecord]] = {}
        items: dict[str, dict[str, Any]] = {}
        for record in records:
            try:
                purchase = Purchase.model_validate(json.loads(record.body))
            except (ValueError, ValidationError) as exc:
                invalid.append((record, "invalid", _describe(exc)))
                continue
            values = purchase.model_dump()
            pid = values["purchase_id"]
            by_purchase.setdefault(pid, []).append(record)
            items.setdefault(pid, to_item(values, self.ingest_shards))  # duplicates in one batch: one write

        failed = self._write(items)
        transient: list[tuple[SqsRecord, str, str]] = []
        for pid, records_of_pid in by_purchase.items():
            for record in records_of_pid:
                if pid in failed:
                    if record.receive_count >= self.max_receive_count:
                        transient.append((record, "transient", failed[pid]))
                    else:
                        result.retry.append((record.message_id, failed[pid]))
                else:
                    result.stored.append(record.message_id)
        for record, kind, reason in invalid + transient:
            log.warning("purchase message %s is dead-lettered (%s): %s", record.message_id, kind, reason)
        self._dead_letter(invalid + transient, result)
        for mid, reason in result.retry:
            log.warning("purchase message %s will be retried: %s", mid, reason)
        self.metrics.put(
            {
                "PurchasesStored": len(result.stored),
                "PurchasesDeadLettered": len(result.dead_lettered),
                "PurchasesRetried": len(result.retry),
            },
            {"Component": "worker"},
        )
        return result

    def _write(self, items: dict[str, dict[str, Any]]) -> dict[str, str]:
        """Write items; returns the purchase ids that could not be written, with the reason."""
        failed: dict[str, str] = {}
        pids = list(items)
        for start in range(0, len(pids), DYNAMODB_MAX_BATCH):
            pending = {pid: items[pid] for pid in pids[start : start + DYNAMODB_MAX_BATCH]}
            reason = ""
            for attempt in range(self.write_attempts):
                if attempt:
                    time.sleep(random.uniform(0, self.backoff_seconds * 2**attempt))  # full jitter
                try:
                    response = self._ddb.batch_write_item(
                        RequestItems={self._table: [{"PutRequest": {"Item": i}} for i in pending.values()]}
                    )
                except (ClientError, BotoCoreError) as exc:
                    reason = _describe(exc)
                    if not _retryable(exc):
                        break
                    continue
                unprocessed = response.get("UnprocessedItems", {}).get(self._table, [])
                left = {r["PutRequest"]["Item"]["purchase_id"]["S"] for r in unprocessed}
                pending = {pid: item for pid, item in pending.items() if pid in left}
                reason = "DynamoDB left the item unprocessed (throttled)"
                if not pending:
                    break
            failed.update(dict.fromkeys(pending, reason))
        return failed

    def _dead_letter(self, entries: list[tuple[SqsRecord, str, str]], result: BatchResult) -> None:
        """Forward records to the DLQ with the reason; any not confirmed are retried instead."""
        now = datetime.now(UTC).isoformat(timespec="seconds")
        for start in range(0, len(entries), 10):
            chunk = entries[start : start + 10]
            batch = [
                {
                    "Id": str(i),
                    "MessageBody": record.body or "<empty body>",
                    "MessageAttributes": {
                        **record.attributes,
                        "failure_type": {"DataType": "String", "StringValue": kind},
                        "failure_reason": {"DataType": "String", "StringValue": reason[:MAX_REASON_CHARS]},
                        "failed_at": {"DataType": "String", "StringValue": now},
                        "source_queue": {"DataType": "String", "StringValue": self.source_queue},
                        "source_message_id": {"DataType": "String", "StringValue": record.message_id},
                        "receive_count": {"DataType": "Number", "StringValue": str(record.receive_count)},
                    },
                }
                for i, (record, kind, reason) in enumerate(chunk)
            ]
            try:
                response = self._sqs.send_message_batch(QueueUrl=self.dlq_url, Entries=batch)  # type: ignore[arg-type]
                failed_ids = {int(f["Id"]) for f in response.get("Failed", [])}
            except (ClientError, BotoCoreError) as exc:
                log.error("could not forward %d message(s) to the DLQ: %s", len(chunk), exc)
                failed_ids = set(range(len(chunk)))
            for i, (record, _, reason) in enumerate(chunk):
                if i in failed_ids:  # SQS's own redrive still moves it after maxReceiveCount
                    result.retry.append((record.message_id, f"DLQ forward failed; {reason}"))
                else:
                    result.dead_lettered.append((record.message_id, reason))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors(include_url=False)
        )
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return f"{err.get('Code')}: {err.get('Message')}"
    if isinstance(exc, json.JSONDecodeError):
        return f"body is not JSON: {exc}"
    return f"{type(exc).__name__}: {exc}"


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500))
        return status >= 500 or "Throttl" in code or code == "ProvisionedThroughputExceededException"
    return True  # connection errors, timeouts


def worker_for(settings: Settings, clients: AwsClients) -> PurchaseWorker:
    """The worker configured by settings."""
    return PurchaseWorker(
        clients.dynamodb,
        settings.purchases_table,
        clients.sqs,
        lambda: clients.queue_url(settings.purchases_dlq),
        max_receive_count=settings.max_receive_count,
        source_queue=settings.purchases_queue,
        ingest_shards=settings.ingest_shards,
        write_attempts=settings.worker_write_attempts,
        metrics=CloudWatchMetrics(clients.cloudwatch),
    )
