"""Snapshots of the local AWS, so what it holds survives a restart of ``make run``.

The moto server keeps everything in memory. A snapshot exports, through the ordinary AWS APIs
(boto3), what the system cannot rebuild: every item of the DynamoDB tables (purchases and
idempotency records), the messages waiting in the purchases queue and its DLQ, and the objects of
the lake bucket. Provisioning recreates the resources themselves; a restore then writes the
snapshot back into them. ``docs/benchmarks.md`` (section *local AWS snapshots*) measures this
against moto's request recorder and says why this one was chosen.

The file is one gzip'd stream of JSON lines: a header, one line per item, message or object, and
a trailer with the counts. It is written to a temporary file and renamed over the previous
snapshot, so a crash mid-write leaves the previous one intact; a file without a valid trailer
(torn, truncated, edited) is refused as a whole before anything is restored.

SQS has no way to read a message without receiving it. Capturing a queue receives every visible
message with a visibility timeout long enough to cover the capture (so none is seen twice), then
makes them all visible again at once. Messages a consumer holds at that moment (in flight) are
invisible; ``settle_seconds`` waits for them to be deleted or to come back (at most the queue's
visibility timeout once the consumers are stopped), which is what a clean stop does. A receive
counts towards the redrive policy: a message at its last allowed receive moves to the DLQ, which
is captured after the queue, so it is kept, there; and periodic snapshots leave out the purchases
queue, which the worker drains within moments (see ``take``). A restored message is a new message (new id,
receive count 0) with the same body and message attributes; restoring is idempotent: a message
already in the queue with the same body and attributes is not sent again.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from cart_aws.aws import AwsClients
from cart_aws.ingest_shards import with_shard
from cart_aws.settings import AwsSettings

FORMAT = "cart-local-aws-snapshot"
VERSION = 1
SNAPSHOT_FILE = "snapshot.jsonl.gz"
# long enough that no captured message becomes visible again (and is received twice) mid-capture
CAPTURE_VISIBILITY_SECONDS = 300
WRITE_THREADS = 8
EXPORT_PREFIX = "_local-aws-snapshot/"


class SnapshotError(RuntimeError):
    """A snapshot could not be taken, read or restored; the message says what and what to do."""


@dataclass(frozen=True)
class Targets:
    """What a snapshot holds: the tables, queues (in capture order: a queue before its DLQ) and buckets."""

    tables: tuple[str, ...]
    queues: tuple[str, ...]
    buckets: tuple[str, ...]
    # queues with a consumer and a redrive policy: captured only when asked (see ``take``)
    consumed: tuple[str, ...] = ()
    # where DynamoDB exports the tables to (briefly, under EXPORT_PREFIX) while a snapshot is taken
    export_bucket: str = ""

    @classmethod
    def of(cls, settings: AwsSettings) -> Targets:
        return cls(
            tables=(
                settings.purchases_table,
                settings.idempotency_table,
                settings.category_kpis_table,
                settings.order_kpis_table,
            ),
            # not the landing queue: restoring the bucket's objects under landing/ makes S3 send
            # their events again, and the sensor's manifest records a file once
            queues=(settings.purchases_queue, settings.purchases_dlq, settings.landing_dlq),
            buckets=(settings.lake_bucket,),
            consumed=(settings.purchases_queue,),
            export_bucket=settings.lake_bucket,
        )


@dataclass
class Summary:
    """What a snapshot or a restore did: counts per resource (``dynamodb:<table>``, ``sqs:<queue>``,
    ``s3:<bucket>``), time taken, the file's size, and messages it could not capture (in flight)."""

    path: Path
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    size: int = 0
    in_flight: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        parts = [f"{n} {what}" for what, n in self.counts.items()]
        text = ", ".join(parts) or "nothing"
        if self.skipped:
            text += "; already there: " + ", ".join(f"{n} on {what}" for what, n in self.skipped.items())
        if self.in_flight:
            text += "; NOT captured, held by a consumer: " + ", ".join(
                f"{n} on {what}" for what, n in self.in_flight.items()
            )
        return f"{text} ({self.size / 1e6:.1f} MB, {self.seconds:.1f} s)"


# ---- taking a snapshot ----


def take(
    aws: AwsClients, targets: Targets, path: Path, *, settle_seconds: float = 0.0, consumed: bool = True
) -> Summary:
    """Write a snapshot of ``targets`` to ``path`` atomically (temporary file, fsync, rename).

    ``settle_seconds``: first wait up to this long for messages in flight to leave flight (use it
    once the consumers are stopped); those still in flight are reported in ``Summary.in_flight``.
    ``consumed=False`` leaves out the queues a consumer is working on (``Targets.consumed``):
    while the worker is down, messages wait there, and a receive by each periodic snapshot would
    use up their receives until the redrive policy moved them to the DLQ.
    """
    started = time.monotonic()
    summary = Summary(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        queues = [q for q in targets.queues if consumed or q not in targets.consumed]
        in_flight = _settle(aws, queues, settle_seconds)
        # queues first: a message the worker stores while the tables are scanned is then in both
        # (stored again, idempotently, after a restore) instead of in neither
        messages = {queue: _capture_queue(aws, queue) for queue in queues}
        with temporary.open("wb") as raw:
            with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as packed:
                out = _LineWriter(packed)
                out.write({"format": FORMAT, "version": VERSION, "taken_at": datetime.now(UTC).isoformat()})
                for queue, captured in messages.items():
                    summary.counts[f"sqs:{queue}"] = out.write_all({"sqs": queue, **m} for m in captured)
                for table in targets.tables:
                    summary.counts[f"dynamodb:{table}"] = out.write_all(
                        {"dynamodb": table, "item": item} for item in _export(aws, table, targets.export_bucket)
                    )
                for bucket in targets.buckets:
                    summary.counts[f"s3:{bucket}"] = out.write_all(
                        {"s3": bucket, **obj} for obj in _objects(aws, bucket)
                    )
                out.write({"end": True, "counts": summary.counts, "lines": out.lines, "sha256": out.digest()})
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(temporary, path)
        _fsync_dir(path.parent)
    except (BotoCoreError, ClientError, OSError) as exc:
        raise SnapshotError(f"snapshot of the local AWS into {path} failed: {exc}") from exc
    finally:
        temporary.unlink(missing_ok=True)
    summary.in_flight = {q: n for q, n in in_flight.items() if n}
    summary.seconds = time.monotonic() - started
    summary.size = path.stat().st_size
    return summary


class _LineWriter:
    """JSON lines into a binary stream, counting them and hashing them (the trailer's checksum)."""

    def __init__(self, stream: gzip.GzipFile) -> None:
        self.stream = stream
        self.lines = 0
        self._hash = hashlib.sha256()

    def write(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, separators=(",", ":"), sort_keys=True) + "\n").encode()
        if "end" not in record:
            self._hash.update(line)
            self.lines += 1
        self.stream.write(line)

    def write_all(self, records: Iterable[dict[str, Any]]) -> int:
        count = 0
        for record in records:
            self.write(record)
            count += 1
        return count

    def digest(self) -> str:
        return self._hash.hexdigest()


def _fsync_dir(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def in_flight(aws: AwsClients, queue: str) -> int:
    """Messages of ``queue`` a consumer has received and not yet deleted (invisible to receives)."""
    attributes = aws.sqs.get_queue_attributes(
        QueueUrl=aws.queue_url(queue), AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessagesNotVisible"])


def _settle(aws: AwsClients, queues: Iterable[str], seconds: float) -> dict[str, int]:
    """Wait up to ``seconds`` until no message of ``queues`` is in flight; what is left in flight."""
    deadline = time.monotonic() + seconds
    while True:
        counts = {queue: in_flight(aws, queue) for queue in queues}
        if not any(counts.values()) or time.monotonic() >= deadline:
            return counts
        time.sleep(0.2)


def _capture_queue(aws: AwsClients, queue: str) -> list[dict[str, Any]]:
    """Every visible message of ``queue`` (body, message attributes, system attributes), left in
    the queue and visible again afterwards."""
    url = aws.queue_url(queue)
    depth = aws.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    if not int(depth["Attributes"]["ApproximateNumberOfMessages"]):
        return []  # nothing waiting: do not touch the queue (receives count towards redrive)
    captured: dict[str, dict[str, Any]] = {}
    handles: list[str] = []
    try:
        while True:
            got = aws.sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=0,
                VisibilityTimeout=CAPTURE_VISIBILITY_SECONDS,
                MessageAttributeNames=["All"],
                MessageSystemAttributeNames=["All"],
            ).get("Messages", [])
            if not got:
                break
            for message in got:
                handles.append(message["ReceiptHandle"])
                system = dict(message.get("Attributes", {}))
                # the count before this capture's own receive
                receives = int(system.get("ApproximateReceiveCount", "1")) - 1
                captured[message["MessageId"]] = {
                    "message_id": message["MessageId"],
                    "body": message["Body"],
                    "message_attributes": _encode_attributes(message.get("MessageAttributes", {})),
                    "sent_timestamp": system.get("SentTimestamp"),
                    "receive_count": receives,
                }
    finally:
        _release(aws, url, handles)
    return list(captured.values())


def _release(aws: AwsClients, url: str, handles: list[str]) -> None:
    """Make received messages visible again at once."""
    for start in range(0, len(handles), 10):
        entries = [
            {"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0}
            for i, h in enumerate(handles[start : start + 10])
        ]
        answer = aws.sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)  # type: ignore[arg-type]
        if answer.get("Failed"):
            raise SnapshotError(f"could not make captured messages visible again on {url}: {answer['Failed']}")


def _export(aws: AwsClients, table: str, bucket: str, timeout: float = 600.0) -> Iterator[dict[str, Any]]:
    """Every item of ``table`` in DynamoDB JSON (binary values base64), through DynamoDB's own export
    to S3 (ExportTableToPointInTime, which needs the point-in-time recovery provisioning enables).

    moto serialises the table in its own process: 100k purchases export in seconds where a
    paginated Scan takes minutes (docs/benchmarks.md). The export's files are removed afterwards.
    """
    ddb = aws.dynamodb
    arn = ddb.describe_table(TableName=table)["Table"]["TableArn"]
    prefix = f"{EXPORT_PREFIX}{table}-{uuid.uuid4()}"
    export = ddb.export_table_to_point_in_time(
        TableArn=arn, S3Bucket=bucket, S3Prefix=prefix, ExportFormat="DYNAMODB_JSON"
    )["ExportDescription"]
    deadline = time.monotonic() + timeout
    while export["ExportStatus"] == "IN_PROGRESS":
        if time.monotonic() > deadline:
            raise SnapshotError(f"the export of {table} did not finish within {timeout:.0f} s")
        time.sleep(0.05)  # moto exports in a background thread; this is the interval between looks
        export = ddb.describe_export(ExportArn=export["ExportArn"])["ExportDescription"]
    keys = [
        obj["Key"]
        for page in aws.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for obj in page.get("Contents", [])
    ]
    try:
        if export["ExportStatus"] != "COMPLETED":
            raise SnapshotError(f"the export of {table} failed: {export.get('FailureMessage', export['ExportStatus'])}")
        for key in keys:
            if "/data/" not in key:
                continue  # AWS also writes manifests; the items are in the data files
            data = gzip.decompress(aws.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            for line in data.splitlines():
                if line.strip():
                    yield json.loads(line)["Item"]
    finally:
        for start in range(0, len(keys), 1000):
            aws.s3.delete_objects(
                Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[start : start + 1000]], "Quiet": True}
            )


def _objects(aws: AwsClients, bucket: str) -> Iterator[dict[str, Any]]:
    keys = [
        obj["Key"]
        for page in aws.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for obj in page.get("Contents", [])
        if not obj["Key"].startswith(EXPORT_PREFIX)  # a table export under way, not the lake's
    ]

    def fetch(key: str) -> dict[str, Any]:
        answer = aws.s3.get_object(Bucket=bucket, Key=key)
        return {
            "key": key,
            "body": base64.b64encode(answer["Body"].read()).decode(),
            "content_type": answer.get("ContentType"),
            "metadata": answer.get("Metadata", {}),
        }

    with ThreadPoolExecutor(max_workers=WRITE_THREADS) as pool:
        yield from pool.map(fetch, keys)


# ---- reading and restoring ----


@dataclass
class Contents:
    """A snapshot read back and checked: items per table, messages per queue, objects per bucket."""

    taken_at: str
    items: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    messages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    objects: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def read(path: Path) -> Contents:
    """The snapshot at ``path``, all of it checked (gzip CRC, trailer, counts, checksum) before any of
    it is returned; SnapshotError if it is torn or damaged."""
    damaged = f"{path} is incomplete or damaged"
    advice = "start with --fresh to ignore it (it is then replaced), or move it away"
    digest = hashlib.sha256()
    lines = 0
    header: dict[str, Any] | None = None
    trailer: dict[str, Any] | None = None
    contents = Contents(taken_at="")
    counts: Counter[str] = Counter()
    try:
        with gzip.open(path, "rb") as stream:
            for raw in stream:
                if trailer is not None:
                    raise SnapshotError(f"{damaged} (lines after its end); {advice}")
                record = json.loads(raw)
                if not isinstance(record, dict):
                    raise SnapshotError(f"{damaged} (a line is not an object); {advice}")
                if record.get("end"):
                    trailer = record
                    continue
                digest.update(raw)
                lines += 1
                if header is None:
                    header = record
                    if record.get("format") != FORMAT or record.get("version") != VERSION:
                        raise SnapshotError(f"{path} is not a version {VERSION} snapshot of the local AWS; {advice}")
                    contents.taken_at = str(record.get("taken_at"))
                elif "dynamodb" in record:
                    contents.items.setdefault(record["dynamodb"], []).append(_decode_item(record["item"]))
                    counts[f"dynamodb:{record['dynamodb']}"] += 1
                elif "sqs" in record:
                    contents.messages.setdefault(record["sqs"], []).append(record)
                    counts[f"sqs:{record['sqs']}"] += 1
                elif "s3" in record:
                    contents.objects.setdefault(record["s3"], []).append(record)
                    counts[f"s3:{record['s3']}"] += 1
                else:
                    raise SnapshotError(f"{damaged} (unknown line {raw[:80]!r}); {advice}")
    except FileNotFoundError:
        raise
    except (OSError, EOFError, zlib.error, ValueError, KeyError) as exc:  # gzip.BadGzipFile is an OSError
        raise SnapshotError(f"{damaged} ({exc or type(exc).__name__}); {advice}") from exc
    if trailer is None:
        raise SnapshotError(f"{damaged} (it has no end: a write was cut short); {advice}")
    expected = {k: v for k, v in (trailer.get("counts") or {}).items() if v}
    if trailer.get("lines") != lines or trailer.get("sha256") != digest.hexdigest() or expected != dict(counts):
        raise SnapshotError(f"{damaged} (its counts or checksum do not match its end); {advice}")
    return contents


def restore(aws: AwsClients, path: Path) -> Summary:
    """Write the snapshot at ``path`` into the (provisioned) resources it names. Read and checked
    in full first, so a damaged file changes nothing. Idempotent: items and objects are put again
    as they are, and a message already waiting in its queue is not sent twice.

    Purchases saved before the ingest-hour index was sharded lack ``ingest_shard``, so the index
    would not hold them: they are given it here (``aws.settings``' shard count, as the worker would)."""
    started = time.monotonic()
    contents = read(path)
    summary = Summary(path, size=path.stat().st_size)
    try:
        for table, items in contents.items.items():
            if table == aws.settings.purchases_table:
                items = [with_shard(item, aws.settings.ingest_shards) for item in items]
            summary.counts[f"dynamodb:{table}"] = _put_items(aws, table, items)
        for queue, messages in contents.messages.items():
            sent, present = _send_missing(aws, queue, messages)
            summary.counts[f"sqs:{queue}"] = sent
            if present:
                summary.skipped[f"sqs:{queue}"] = present
        for bucket, objects in contents.objects.items():
            summary.counts[f"s3:{bucket}"] = _put_objects(aws, bucket, objects)
    except (BotoCoreError, ClientError) as exc:
        raise SnapshotError(
            f"restoring {path} into the local AWS failed: {exc} (is every resource provisioned?)"
        ) from exc
    summary.seconds = time.monotonic() - started
    return summary


def _put_items(aws: AwsClients, table: str, items: list[dict[str, Any]]) -> int:
    def write(chunk: list[dict[str, Any]]) -> None:
        requests: list[Any] = [{"PutRequest": {"Item": item}} for item in chunk]
        pause = 0.05
        while requests:
            answer = aws.dynamodb.batch_write_item(RequestItems={table: requests})
            requests = list(answer.get("UnprocessedItems", {}).get(table, []))
            if requests:
                time.sleep(pause)  # throttled: back off before retrying what was not written
                pause = min(pause * 2, 2.0)

    chunks = [items[i : i + 25] for i in range(0, len(items), 25)]
    _in_threads(write, chunks)
    return len(items)


def _send_missing(aws: AwsClients, queue: str, messages: list[dict[str, Any]]) -> tuple[int, int]:
    """Send the messages not already waiting in ``queue``; (sent, already there)."""
    waiting = Counter(_fingerprint(m) for m in _capture_queue(aws, queue))
    missing = []
    for message in messages:
        key = _fingerprint(message)
        if waiting[key]:
            waiting[key] -= 1
        else:
            missing.append(message)
    url = aws.queue_url(queue)

    def send(chunk: list[dict[str, Any]]) -> None:
        entries: list[Any] = []
        for i, message in enumerate(chunk):
            entry = {"Id": str(i), "MessageBody": message["body"]}
            if message["message_attributes"]:
                entry["MessageAttributes"] = _decode_attributes(message["message_attributes"])
            entries.append(entry)
        answer = aws.sqs.send_message_batch(QueueUrl=url, Entries=entries)
        if answer.get("Failed"):
            raise SnapshotError(f"could not send restored messages to {queue}: {answer['Failed']}")

    _in_threads(send, [missing[i : i + 10] for i in range(0, len(missing), 10)])
    return len(missing), len(messages) - len(missing)


def _put_objects(aws: AwsClients, bucket: str, objects: list[dict[str, Any]]) -> int:
    def put(obj: dict[str, Any]) -> None:
        extra: dict[str, Any] = {"Metadata": obj.get("metadata") or {}}
        if obj.get("content_type"):
            extra["ContentType"] = obj["content_type"]
        aws.s3.put_object(Bucket=bucket, Key=obj["key"], Body=base64.b64decode(obj["body"]), **extra)

    _in_threads(put, objects)
    return len(objects)


def _in_threads(work: Callable[[Any], None], chunks: list[Any]) -> None:
    with ThreadPoolExecutor(max_workers=WRITE_THREADS) as pool:
        list(pool.map(work, chunks))  # list(): re-raises the first failure


# ---- JSON encodings of binary values ----


def _fingerprint(message: dict[str, Any]) -> str:
    return json.dumps([message["body"], message["message_attributes"]], sort_keys=True)


def _encode_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, value in attributes.items():
        kept = {k: v for k, v in value.items() if k in ("DataType", "StringValue", "BinaryValue")}
        if "BinaryValue" in kept:
            kept["BinaryValue"] = base64.b64encode(kept["BinaryValue"]).decode()
        out[name] = kept
    return out


def _decode_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, value in attributes.items():
        kept = dict(value)
        if "BinaryValue" in kept:
            kept["BinaryValue"] = base64.b64decode(kept["BinaryValue"])
        out[name] = kept
    return out


def _decode_value(value: dict[str, Any]) -> dict[str, Any]:
    (kind, inner), *_ = value.items()
    if kind == "B":
        return {"B": base64.b64decode(inner)}
    if kind == "BS":
        return {"BS": [base64.b64decode(b) for b in inner]}
    if kind == "L":
        return {"L": [_decode_value(v) for v in inner]}
    if kind == "M":
        return {"M": _decode_item(inner)}
    return value


def _decode_item(item: dict[str, Any]) -> dict[str, Any]:
    return {name: _decode_value(value) for name, value in item.items()}
