"""Triage of the purchases dead-letter queue: redrive what failed for a transient reason, quarantine
what breaks the contract, and never delete a message before it has been handled.

- A message whose body is a valid purchase failed for a transient reason (DynamoDB throttled or
  unavailable): it is sent back to the purchases queue, tagged ``redriven_from``, and the worker
  stores it (idempotently, so a redrive that happens twice stores one item).
- A message that breaks the contract can never be stored: it is written to the lake's quarantine
  (``quarantine/dlq/day=YYYY-MM-DD/<batch>.jsonl``, with the reason) before it leaves the DLQ.

The DLQ sensor (``sensors/dlq.py``) runs this, then reruns the hours of the redriven purchases.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from cart_api.models import Purchase
from cart_aws.aws import AwsClients
from cart_aws.settings import AwsSettings
from cart_lakehouse.lake import Lake
from cart_lakehouse.layout import DLQ_QUARANTINE

QUARANTINE = DLQ_QUARANTINE


@dataclass(frozen=True)
class Quarantined:
    message_id: str
    body: str
    reason: str
    failure_type: str
    purchase_id: str | None

    def record(self, quarantined_at: str) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "purchase_id": self.purchase_id,
            "reason": self.reason,
            "failure_type": self.failure_type,
            "body": self.body,
            "quarantined_at": quarantined_at,
        }


@dataclass
class TriageResult:
    batch_id: str = ""
    received: int = 0
    redriven: dict[str, list[str]] = field(default_factory=dict)  # ingest hour -> purchase ids
    quarantined: list[Quarantined] = field(default_factory=list)
    quarantine_file: str | None = None
    depth_after: int = 0

    @property
    def redriven_count(self) -> int:
        return sum(len(ids) for ids in self.redriven.values())

    def reasons(self) -> Counter[str]:
        return Counter(q.reason.split(":", 1)[0] for q in self.quarantined)


def _attribute(message: dict[str, Any], name: str) -> str | None:
    value = message.get("MessageAttributes", {}).get(name, {})
    return value.get("StringValue") if isinstance(value, dict) else None


def classify(message: dict[str, Any]) -> Purchase | Quarantined:
    """A valid purchase (to redrive) or what to quarantine, with the reason."""
    body = message.get("Body", "")
    try:
        return Purchase.model_validate(json.loads(body))
    except (ValueError, ValidationError) as exc:
        if isinstance(exc, ValidationError):
            reason = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
        else:
            reason = f"body is not JSON: {exc}"
        pid = None
        try:
            parsed = json.loads(body)
            pid = parsed.get("purchase_id") if isinstance(parsed, dict) else None
        except ValueError:
            pass
        return Quarantined(
            message_id=message["MessageId"],
            body=body,
            reason=_attribute(message, "failure_reason") or reason,
            failure_type=_attribute(message, "failure_type") or "invalid",
            purchase_id=pid if isinstance(pid, str) else None,
        )


class DlqTriage:
    def __init__(self, settings: AwsSettings, clients: AwsClients, lake: Lake, visibility_timeout: int = 120) -> None:
        self.settings = settings
        self.aws = clients
        self.lake = lake
        self.visibility_timeout = visibility_timeout

    @property
    def dlq_url(self) -> str:
        return self.aws.queue_url(self.settings.purchases_dlq)

    def depth(self) -> int:
        attrs = self.aws.sqs.get_queue_attributes(
            QueueUrl=self.dlq_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def receive(self, limit: int) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        while len(messages) < limit:
            got = self.aws.sqs.receive_message(
                QueueUrl=self.dlq_url,
                MaxNumberOfMessages=min(10, limit - len(messages)),
                WaitTimeSeconds=0,
                VisibilityTimeout=self.visibility_timeout,  # hidden while handled; back if we crash
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not got:
                break
            messages.extend(dict(m) for m in got)
        return messages

    def run(self, limit: int = 500) -> TriageResult:
        messages = self.receive(limit)
        result = TriageResult(received=len(messages))
        if not messages:
            result.depth_after = self.depth()
            return result
        result.batch_id = hashlib.sha256("".join(sorted(m["MessageId"] for m in messages)).encode()).hexdigest()[:12]
        to_redrive: list[tuple[dict[str, Any], Purchase]] = []
        for message in messages:
            verdict = classify(message)
            if isinstance(verdict, Quarantined):
                result.quarantined.append(verdict)
            else:
                to_redrive.append((message, verdict))

        handled: list[dict[str, Any]] = []
        if result.quarantined:  # written before the messages leave the DLQ
            result.quarantine_file = self._quarantine(result.batch_id, result.quarantined)
            quarantined_ids = {q.message_id for q in result.quarantined}
            handled += [m for m in messages if m["MessageId"] in quarantined_ids]
        for message, purchase in self._redrive(to_redrive, result.batch_id):
            values = purchase.model_dump()
            result.redriven.setdefault(values["ingest_hour"], []).append(values["purchase_id"])
            handled.append(message)
        self._delete(handled)
        result.depth_after = self.depth()
        return result

    def _quarantine(self, batch_id: str, quarantined: list[Quarantined]) -> str:
        now = datetime.now(UTC)
        stamp = now.isoformat(timespec="seconds")
        lines = "".join(json.dumps(q.record(stamp), sort_keys=True) + "\n" for q in quarantined)
        return self.lake.write_bytes(f"{QUARANTINE}/day={now:%Y-%m-%d}/{batch_id}.jsonl", lines.encode())

    def _redrive(
        self, entries: list[tuple[dict[str, Any], Purchase]], batch_id: str
    ) -> list[tuple[dict[str, Any], Purchase]]:
        """Send back to the purchases queue; returns the entries SQS confirmed."""
        queue_url = self.aws.queue_url(self.settings.purchases_queue)
        confirmed = []
        for start in range(0, len(entries), 10):
            chunk = entries[start : start + 10]
            answer = self.aws.sqs.send_message_batch(
                QueueUrl=queue_url,
                Entries=[
                    {
                        "Id": str(i),
                        "MessageBody": message["Body"],
                        "MessageAttributes": {
                            "redriven_from": {"DataType": "String", "StringValue": self.settings.purchases_dlq},
                            "redrive_batch": {"DataType": "String", "StringValue": batch_id},
                            "purchase_id": {"DataType": "String", "StringValue": purchase.model_dump()["purchase_id"]},
                        },
                    }
                    for i, (message, purchase) in enumerate(chunk)
                ],
            )
            ok = {int(s["Id"]) for s in answer.get("Successful", [])}
            confirmed += [entry for i, entry in enumerate(chunk) if i in ok]
        return confirmed

    def _delete(self, messages: list[dict[str, Any]]) -> None:
        for start in range(0, len(messages), 10):
            chunk = messages[start : start + 10]
            self.aws.sqs.delete_message_batch(
                QueueUrl=self.dlq_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
            )


def stored_ids(clients: AwsClients, table: str, purchase_ids: list[str]) -> set[str]:
    """Which of these purchases DynamoDB holds (BatchGetItem, 100 keys a call). The ids may repeat (a
    purchase delivered twice can be dead-lettered twice); BatchGetItem refuses repeated keys."""
    found: set[str] = set()
    unique = sorted(set(purchase_ids))
    for start in range(0, len(unique), 100):
        keys: list[Any] = [{"purchase_id": {"S": pid}} for pid in unique[start : start + 100]]
        request: dict[str, Any] = {table: {"Keys": keys, "ProjectionExpression": "purchase_id"}}
        while request:
            answer = clients.dynamodb.batch_get_item(RequestItems=request)
            found.update(item["purchase_id"]["S"] for item in answer.get("Responses", {}).get(table, []))
            request = dict(answer.get("UnprocessedKeys") or {})
    return found
