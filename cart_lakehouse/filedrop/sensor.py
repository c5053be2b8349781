"""The ``landing_files`` sensor: from S3 events of landed files to file sets, each a dynamic partition
of ``filedrop_job``.

Each tick (every 15 s):

1. receives the landing queue's S3 events (at most ``MAX_BATCHES`` batches of 10), records the
   landed files in the manifest (``cart_lakehouse/filedrop/manifest.py``), saves it, and only then
   deletes the messages: a crash in between redelivers them, and a duplicate is recorded once. A
   message that is not an S3 event is logged and left to the queue's redrive policy (to the landing
   DLQ, whose CloudWatch alarm notifies the alerts topic);
2. reads each pending file's references (cached in the lake) and forms sets: complete sets become a
   partition and a run (run key = set id, so a request repeated after a lost tick launches once); a
   set of one unreadable file too, so validation rejects it with its rule; an incomplete set
   becomes a partition without a run, and an alert tells which files wait for which ids and how to
   force it through from the UI (``FORCE_RUN_CONFIG``).

The set record (``filedrop/sets/<set_id>.json``) is written before the manifest marks its files
``in_set``. A formed set stays in the manifest's ``unconfirmed`` list until Dagster has its
partition; until then each tick requests it again (the daemon may have lost the tick's result).
Settings: ``CART_LANDING_QUEUE``, ``CART_LAKE_BUCKET``, ``CART_FILEDROP_MAX_FILE_BYTES``,
``CART_FILEDROP_SET_WAIT_SECONDS``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError
from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from cart_aws.aws import AwsClients
from cart_lakehouse.alerts import Alert, publish_alert
from cart_lakehouse.automation import TRIGGER_TAG
from cart_lakehouse.filedrop.events import LandedObject, Received, delete, receive
from cart_lakehouse.filedrop.landing import is_gone
from cart_lakehouse.filedrop.layout import set_record
from cart_lakehouse.filedrop.manifest import (
    INCOMPLETE,
    FormedSet,
    Forming,
    Gone,
    Manifest,
    ObjectHead,
    Recorded,
    RefReader,
    Refs,
    Unreadable,
    form_sets,
    plural,
)
from cart_lakehouse.filedrop.partitions import FILEDROP_JOB, FORCE_RUN_CONFIG, filedrop_sets
from cart_lakehouse.filedrop.store import known_ids
from cart_lakehouse.lake import Lake
from cart_lakehouse.resources import AwsResource, LakeResource
from cart_lakehouse.settings import LakeSettings

if TYPE_CHECKING:
    from logging import Logger

SENSOR_NAME = "landing_files"
INTERVAL_SECONDS = 15
SET_TAG = "cart/filedrop_set"
PARTITIONS = filedrop_sets.name or "filedrop_sets"


def utc_now() -> datetime:
    return datetime.now(UTC)


def force_instructions(set_id: str) -> str:
    return (
        f"to load it as it is, launch partition {set_id} of {FILEDROP_JOB} from the Dagster UI "
        f"(Jobs > {FILEDROP_JOB} > Launchpad, or the partition's page) with run config "
        f"{json.dumps(FORCE_RUN_CONFIG)}"
    )


def incomplete_alert(formed: FormedSet, settings: LakeSettings) -> Alert:
    """Which files of an incomplete set wait for which ids, and how to force it."""
    missing = ", ".join(f"{count} {target}" for target, count in sorted(formed.missing.items()) if count)
    return Alert(
        kind="filedrop_set_incomplete",
        title=f"File set {formed.set_id}: {plural(len(formed.files), 'file')} missing referenced ids",
        reason=(
            f"still missing {missing} {settings.filedrop_set_wait_seconds:.0f} s after landing "
            f"(CART_FILEDROP_SET_WAIT_SECONDS); not launched, and it will not start on its own: files dropped "
            f"now form sets of their own. If the files that hold those ids exist, drop them first and let them "
            f"load; then (every reference is then found), or now (the items missing them load as warnings), "
            f"{force_instructions(formed.set_id).removeprefix('to load it as it is, ')}"
        ),
        partition=formed.set_id,
        details={
            "job": FILEDROP_JOB,
            "waiting": [w.describe() for w in formed.waiting],
            "files": [f.record() for f in formed.files],
            "missing_ids": formed.missing,
            "run_config_to_force": FORCE_RUN_CONFIG,
            "set_record": set_record(formed.set_id),
        },
    )


class S3Heads:
    """HeadObject of landed keys, answering None for a key that is gone."""

    def __init__(self, clients: AwsClients, bucket: str) -> None:
        self.s3 = clients.s3
        self.bucket = bucket

    def __call__(self, key: str) -> ObjectHead | None:
        try:
            head = self.s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if is_gone(exc):
                return None
            raise
        return ObjectHead(str(head.get("ETag", "")).strip('"'), int(head.get("ContentLength", 0)))


@dataclass
class Tick:
    """What one evaluation did, for its result and its log."""

    received: Received
    recorded: list[Recorded] = field(default_factory=list)
    forming: Forming = field(default_factory=Forming)
    run_requests: list[RunRequest] = field(default_factory=list)
    new_partitions: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.recorded:
            out[r.outcome] = out.get(r.outcome, 0) + 1
        return out


class LandingFiles:
    """One tick of the sensor over its settings, clients, lake and Dagster instance."""

    def __init__(
        self, context: SensorEvaluationContext, settings: LakeSettings, clients: AwsClients, lake: Lake, now: datetime
    ) -> None:
        self.context = context
        self.log: Logger = context.log
        self.settings = settings
        self.clients = clients
        self.lake = lake
        self.now = now
        self.manifest = Manifest.load(lake)
        self.reader = RefReader(lake, clients.s3, settings.lake_bucket, settings.filedrop_max_file_bytes)
        self.dirty = False

    def run(self) -> Tick:
        url = self.clients.queue_url(self.settings.landing_queue)
        tick = Tick(receive(self.clients.sqs, url, self.settings.lake_bucket))
        self._report_poison(url, tick.received)
        heads = S3Heads(self.clients, self.settings.lake_bucket)
        tick.recorded = [self._record(obj, heads) for obj in tick.received.landed]
        if tick.received.messages:
            self.log.info(f"landing queue: {tick.received.summary()}; files: {tick.counts() or 'none'}")
        if tick.recorded:
            self.manifest.save(self.lake, self.now)  # before the delete: at least once
        failures = delete(self.clients.sqs, url, tick.received.receipts)
        if failures:
            self.log.warning(f"{len(failures)} messages not deleted (they come back as duplicates): {failures[:3]}")

        self._confirm(tick)
        tick.forming = form_sets(
            self.manifest, self.now, self.settings.filedrop_set_wait_seconds, self._refs(), self._known
        )
        for formed in tick.forming.sets:
            self._form(formed, tick)
        removed = self.manifest.prune(self.now)
        self.dirty |= bool(removed)
        if self.dirty:
            self.manifest.save(self.lake, self.now)
        return tick

    def _report_poison(self, url: str, received: Received) -> None:
        if not received.poison:
            return
        # what SQS will do with it, from the queue itself
        attrs = self.clients.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])["Attributes"]
        redrive = json.loads(attrs.get("RedrivePolicy", "{}") or "{}")
        if redrive:
            dlq = str(redrive.get("deadLetterTargetArn", "")).rsplit(":", 1)[-1]
            then = f"after {redrive.get('maxReceiveCount')} receives SQS moves it to {dlq}, whose alarm alerts"
        else:
            then = "the queue has no redrive policy (run cart-provision): it comes back until it expires"
        for poison in received.poison:
            self.log.warning(
                f"landing queue message {poison.message_id} is not an S3 event ({poison.reason}); left in "
                f"{self.settings.landing_queue} (receive {poison.receive_count}): {then}. "
                f"Body starts: {poison.body[:120]!r}"
            )

    def _record(self, obj: LandedObject, heads: S3Heads) -> Recorded:
        recorded = self.manifest.record(obj, heads, self.now)
        entry = recorded.entry
        if recorded.outcome == "new":
            self.log.info(f"landed: {entry.key} ({entry.table or 'unknown table'}, {entry.size:,} bytes)")
        elif recorded.outcome == "gone":
            self.log.warning(f"event for {entry.key} (ETag {entry.etag}) ignored: {entry.note}")
        return recorded

    def _refs(self) -> dict[str, Refs | Unreadable]:
        refs: dict[str, Refs | Unreadable] = {}
        for entry in self.manifest.pending():
            try:
                found = self.reader.read(entry)
            except (BotoCoreError, ClientError) as exc:  # not the file's fault: read it again next tick
                self.log.warning(f"could not read {entry.key} ({exc}); trying again next tick")
                continue
            if isinstance(found, Gone):
                self.manifest.mark_gone(entry, found.note, self.now)
                self.reader.forget([entry])
                self.dirty = True
                self.log.warning(f"{entry.key} (ETag {entry.etag}) is gone: {found.note}")
                continue
            refs[entry.id] = found
        return refs

    def _known(self, target: str) -> set[str]:
        table, column = target.split(".", 1)
        ids = known_ids(self.lake, table, column)
        self.log.info(f"{len(ids):,} {target} loaded in silver")
        return ids

    def _form(self, formed: FormedSet, tick: Tick) -> None:
        formed.write(self.lake)
        if formed.kind == INCOMPLETE:
            # before the manifest is saved: a failed publish fails the tick, which forms the set again
            publish_alert(
                self.clients.sns,
                self.clients.topic_arn(self.settings.alerts_topic),
                incomplete_alert(formed, self.settings),
            )
            instructions = force_instructions(formed.set_id)
            self.log.warning(f"set {formed.set_id} incomplete, not launched: {formed.reason}; {instructions}")
        else:
            self.log.info(f"set {formed.set_id} formed ({formed.kind}): {formed.tables()}; {formed.reason}")
        self.manifest.assign(formed, self.now)
        self.reader.forget(formed.files)
        self.dirty = True
        self._request(formed.set_id, formed.complete, len(formed.files), tick)

    def _request(self, set_id: str, complete: bool, files: int, tick: Tick) -> None:
        tick.new_partitions.append(set_id)
        if complete:
            tick.run_requests.append(
                RunRequest(
                    run_key=set_id,
                    partition_key=set_id,
                    tags={TRIGGER_TAG: SENSOR_NAME, SET_TAG: set_id, "cart/filedrop_files": str(files)},
                )
            )

    def _confirm(self, tick: Tick) -> None:
        """Sets formed by earlier ticks: done once Dagster has their partition, else requested again."""
        still: list[str] = []
        for set_id in self.manifest.unconfirmed:
            if self.context.instance.has_dynamic_partition(PARTITIONS, set_id):
                continue
            if not self.lake.exists(set_record(set_id)):
                self.log.error(
                    f"set {set_id} is not a partition and its record {self.lake.uri(set_record(set_id))} is gone: "
                    "not requested; its files stay in_set in the manifest (drop them again to load them)"
                )
                continue
            still.append(set_id)
            record = json.loads(self.lake.read_bytes(set_record(set_id)))
            self.log.warning(f"set {set_id} is not a partition yet (a lost tick?): requesting it again")
            self._request(set_id, bool(record["complete"]), len(record["files"]), tick)
        if still != self.manifest.unconfirmed:
            self.manifest.unconfirmed = still
            self.dirty = True

    def skip_message(self, tick: Tick) -> str:
        pending = self.manifest.pending()
        counts = tick.counts()
        head = f"{plural(counts.get('new', 0), 'file')} landed" if tick.recorded else "no files landed"
        if not pending:
            return f"{head}; nothing pending"
        parts = [f"{head}; {len(pending)} pending"]
        if tick.forming.held:
            parts.append(tick.forming.held)
        parts += [
            f"{w.describe()} (reported as incomplete at {w.deadline:%Y-%m-%d %H:%M:%S} UTC)"
            for w in tick.forming.waiting
        ]
        return "; ".join(parts)


def landing_files_sensor(clock: Callable[[], datetime] = utc_now) -> SensorDefinition:
    """The sensor, reading the time from ``clock`` (tests move it past the waits)."""

    @sensor(
        name=SENSOR_NAME,
        job_name=FILEDROP_JOB,
        minimum_interval_seconds=INTERVAL_SECONDS,
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            "Records files landed under landing/ in the lake bucket (S3 events on the landing queue) in the "
            "manifest and launches each complete set of orders, order items and products as a partition of "
            "filedrop_job; an incomplete set is reported after CART_FILEDROP_SET_WAIT_SECONDS."
        ),
    )
    def landing_files(context: SensorEvaluationContext, aws: AwsResource, lake: LakeResource) -> SensorResult:
        tick_runner = LandingFiles(context, aws.settings(), aws.clients(), lake.lake(), clock().astimezone(UTC))
        tick = tick_runner.run()
        pending = tick_runner.manifest.pending()
        cursor = json.dumps(
            {
                "pending": len(pending),
                "waiting": len(tick.forming.waiting),
                "unconfirmed": len(tick_runner.manifest.unconfirmed),
                "last_set": max((f.set_id for f in tick_runner.manifest.files if f.set_id), default=None),
            },
            sort_keys=True,
        )
        if not tick.new_partitions:
            return SensorResult(skip_reason=SkipReason(tick_runner.skip_message(tick)), cursor=cursor)
        return SensorResult(
            run_requests=tick.run_requests,
            dynamic_partitions_requests=[filedrop_sets.build_add_request(tick.new_partitions)],
            cursor=cursor,
        )

    return landing_files


landing_files = landing_files_sensor()
