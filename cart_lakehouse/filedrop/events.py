"""The landing queue's S3 event notifications, read into landed objects.

S3 sends one message per event to the landing queue (provisioning configures ``s3:ObjectCreated:*``
under ``landing/``). A body is one of: a ``Records`` document (the event; its key URL-encoded), the
``s3:TestEvent`` S3 sends when the configuration is put, or something else. Test events and records
that are not an object landing (a removal, another bucket, outside ``landing/``, a folder marker)
are skipped and counted. A body that is not an S3 event at all is *poison*: it is reported and left
in the queue, so the queue's redrive policy moves it to the landing DLQ after
``CART_MAX_RECEIVE_COUNT`` receives, where the DLQ's alarm reports it to people.

Reading is separate from deleting: the sensor deletes the messages it understood only after the
manifest that records them is saved (at least once: a crash in between redelivers them, and a
duplicate event is recorded once).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cart_lakehouse.filedrop.layout import LANDING, event_key

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

TEST_EVENT = "s3:TestEvent"
BATCH = 10  # SQS's most messages per receive
MAX_BATCHES = 10  # per sensor tick: bounded work per tick; the rest waits for the next tick
RECEIVE_WAIT_SECONDS = 1  # a short long-poll: asks every SQS server, costs at most 1 s when empty


class NotAnS3Event(ValueError):
    """A message body that is not an S3 event notification."""


@dataclass(frozen=True)
class LandedObject:
    """One object created under ``landing/``, as its S3 event describes it."""

    key: str  # decoded: landing/orders/my file.csv
    size: int
    etag: str  # without quotes, as HeadObject's ETag is after stripping them
    sequencer: str  # S3's per-key ordering of events (moto sends none)
    event_time: str  # ISO 8601, UTC
    event_name: str  # ObjectCreated:Put, :Copy, :CompleteMultipartUpload ...

    @property
    def event_id(self) -> str:
        """What tells a redelivered event from a new upload of the same bytes: S3's sequencer, or
        the event's time where there is none (moto)."""
        return self.sequencer or self.event_time


@dataclass(frozen=True)
class Poison:
    """A message that is not an S3 event, left in the queue for its redrive policy."""

    message_id: str
    reason: str
    body: str  # its beginning, for the log
    receive_count: int


@dataclass
class Received:
    """What one tick took from the landing queue."""

    messages: int = 0
    landed: list[LandedObject] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> records
    poison: list[Poison] = field(default_factory=list)
    receipts: list[str] = field(default_factory=list)  # of the understood messages: delete once recorded

    def summary(self) -> str:
        parts = [f"{self.messages} messages", f"{len(self.landed)} landed-file events"]
        parts += [f"{count} skipped ({reason})" for reason, count in sorted(self.skipped.items())]
        if self.poison:
            parts.append(f"{len(self.poison)} not S3 events (left for the queue's redrive to its DLQ)")
        return ", ".join(parts)


def _record(record: Any, bucket: str) -> LandedObject | str:
    """A landed object, or why the record is skipped; raises NotAnS3Event for a malformed one."""
    try:
        name = str(record["eventName"])
        s3 = record["s3"]
        record_bucket = str(s3["bucket"]["name"])
        raw_key = str(s3["object"]["key"])
    except (KeyError, TypeError) as exc:
        raise NotAnS3Event(f"a record without {exc}") from exc
    if record.get("eventSource") not in (None, "aws:s3"):
        return f"event source {record.get('eventSource')}"
    if not name.startswith("ObjectCreated:"):
        return name
    if record_bucket != bucket:
        return f"bucket {record_bucket}"
    key = event_key(raw_key)
    if not key.startswith(LANDING + "/"):
        return f"outside {LANDING}/"
    if key.endswith("/"):
        return "folder marker"
    obj = s3["object"]
    return LandedObject(
        key=key,
        size=int(obj.get("size") or 0),
        etag=str(obj.get("eTag") or obj.get("etag") or "").strip('"'),
        sequencer=str(obj.get("sequencer") or ""),
        event_time=str(record.get("eventTime") or ""),
        event_name=name,
    )


def parse_body(body: str, bucket: str) -> tuple[list[LandedObject], list[str]]:
    """The landed objects of one message body and the reasons its other records were skipped.

    An S3 event forwarded through SNS without raw delivery (an SNS envelope) is unwrapped. Raises
    ``NotAnS3Event`` for anything that is not an S3 event notification.
    """
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise NotAnS3Event(f"not JSON ({exc})") from exc
    if isinstance(document, dict) and document.get("Type") == "Notification" and "Message" in document:
        return parse_body(str(document["Message"]), bucket)
    if not isinstance(document, dict):
        raise NotAnS3Event(f"JSON {type(document).__name__}, not an S3 event notification")
    if document.get("Event") == TEST_EVENT:
        return [], [TEST_EVENT]
    records = document.get("Records")
    if not isinstance(records, list) or not records:
        raise NotAnS3Event(f"JSON without Records (keys: {', '.join(sorted(document)[:8]) or 'none'})")
    landed: list[LandedObject] = []
    skipped: list[str] = []
    for record in records:
        parsed = _record(record, bucket)
        if isinstance(parsed, LandedObject):
            landed.append(parsed)
        else:
            skipped.append(parsed)
    return landed, skipped


def parse_messages(messages: list[MessageTypeDef], bucket: str) -> Received:
    """Sort received SQS messages into landed objects, skipped records and poison."""
    received = Received(messages=len(messages))
    for message in messages:
        body = message.get("Body", "")
        try:
            landed, skipped = parse_body(body, bucket)
        except NotAnS3Event as exc:
            count = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "0") or 0)
            received.poison.append(Poison(message.get("MessageId", "?"), str(exc), body[:200], count))
            continue
        received.landed.extend(landed)
        received.skipped.update(skipped)
        received.receipts.append(message["ReceiptHandle"])
    return received


def receive(sqs: SQSClient, queue_url: str, bucket: str, max_batches: int = MAX_BATCHES) -> Received:
    """Up to ``max_batches`` batches of the queue's messages (fewer when it runs dry), parsed.

    The messages stay in the queue, hidden for its visibility timeout, until ``delete``."""
    messages: list[MessageTypeDef] = []
    for batch in range(max_batches):
        got = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=BATCH,
            WaitTimeSeconds=RECEIVE_WAIT_SECONDS if batch == 0 else 0,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        ).get("Messages", [])
        messages.extend(got)
        if len(got) < BATCH:
            break
    return parse_messages(messages, bucket)


def delete(sqs: SQSClient, queue_url: str, receipts: list[str]) -> list[str]:
    """Delete messages by receipt handle; returns why any could not be (they come back, and are
    then recorded as duplicates)."""
    failures: list[str] = []
    for start in range(0, len(receipts), BATCH):
        chunk = receipts[start : start + BATCH]
        answer = sqs.delete_message_batch(
            QueueUrl=queue_url, Entries=[{"Id": str(i), "ReceiptHandle": r} for i, r in enumerate(chunk)]
        )
        failures += [f"{f.get('Code')}: {f.get('Message')}" for f in answer.get("Failed", [])]
    return failures
