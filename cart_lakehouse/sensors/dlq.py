"""The DLQ sensor: triages the dead-letter queue, then reruns bronze → gold for the hours of the
redriven purchases once the worker has stored them.

Each tick: transient failures are redriven to the purchases queue, contract breakers are
quarantined in the lake (reported on the ``quarantine/dlq_purchases`` asset), the DLQ depth is
observed on the DynamoDB asset and put in CloudWatch, and a batch found in the DLQ is alerted on
the alerts topic with what was done about it. The cursor remembers which redriven
purchases are not stored yet; when all of an hour's are, one run of that hour is requested with
the run key ``dlq:<hour>:<batch>``: deterministic per hour and DLQ batch, so a later batch for the
same hour is a new run and not deduplicated away.
"""

import json
from dataclasses import asdict, dataclass, field

from dagster import (
    AssetMaterialization,
    AssetObservation,
    DefaultSensorStatus,
    MetadataValue,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from cart_aws.metrics import CloudWatchMetrics
from cart_lakehouse.alerts import Alert, publish_alert
from cart_lakehouse.automation import hourly_lakehouse_job
from cart_lakehouse.dlq import DlqTriage, TriageResult, stored_ids
from cart_lakehouse.partitions import Hour, hourly_partitions
from cart_lakehouse.resources import AwsResource, LakeResource


@dataclass
class Pending:
    hour: str  # ingest hour, yyyy-MM-ddTHH
    batch: str
    ids: list[str]


@dataclass
class DlqCursor:
    pending: list[Pending] = field(default_factory=list)
    last_depth: int | None = None

    @classmethod
    def parse(cls, text: str | None) -> "DlqCursor":
        if not text:
            return cls()
        data = json.loads(text)
        return cls([Pending(**p) for p in data.get("pending", [])], data.get("last_depth"))

    def dump(self) -> str:
        return json.dumps({"pending": [asdict(p) for p in self.pending], "last_depth": self.last_depth})


def dlq_alert(triage: TriageResult) -> Alert:
    """What reached the DLQ and what the sensor did about it. On AWS the CloudWatch alarm on the
    DLQ's depth notifies the same topic; this alert adds the triage (moto evaluates no alarms)."""
    return Alert(
        kind="dlq_depth",
        title=f"{triage.received} purchase messages in the dead-letter queue",
        reason=f"{triage.redriven_count} redriven to the purchases queue, {len(triage.quarantined)} quarantined",
        assets=("dynamodb/purchases", "quarantine/dlq_purchases"),
        details={
            "dlq_batch": triage.batch_id,
            "depth_after": triage.depth_after,
            "redriven_by_hour": {hour: len(ids) for hour, ids in triage.redriven.items()},
            "quarantine_reasons": dict(triage.reasons()),
            "quarantine_file": triage.quarantine_file,
        },
    )


@sensor(
    name="dlq_redrive",
    job=hourly_lakehouse_job,
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="Redrives transient DLQ failures, quarantines contract breakers, reruns the hours they touch.",
)
def dlq_redrive(context: SensorEvaluationContext, aws: AwsResource, lake: LakeResource) -> SensorResult | SkipReason:
    settings = aws.settings()
    clients = aws.clients()
    cursor = DlqCursor.parse(context.cursor)
    triage = DlqTriage(settings, clients, lake.lake()).run()
    for hour, ids in sorted(triage.redriven.items()):
        cursor.pending.append(Pending(hour, triage.batch_id, sorted(set(ids))))  # a purchase may be in twice

    runs: list[RunRequest] = []
    still: list[Pending] = []
    valid_keys = set(hourly_partitions.get_partition_keys())
    for pending in cursor.pending:
        missing = sorted(set(pending.ids) - stored_ids(clients, settings.purchases_table, pending.ids))
        if missing:
            still.append(Pending(pending.hour, pending.batch, missing))
            continue
        key = Hour.from_ingest_hour(pending.hour).key
        if key not in valid_keys:
            context.log.warning(f"hour {pending.hour} is outside the partitions (CART_PARTITIONS_START); not rerun")
            continue
        runs.append(
            RunRequest(
                run_key=f"dlq:{key}:{pending.batch}",
                partition_key=key,
                tags={"cart/trigger": "dlq_redrive", "cart/dlq_batch": pending.batch},
            )
        )
    cursor.pending = still

    events: list[AssetMaterialization | AssetObservation] = []
    if triage.quarantined:
        events.append(
            AssetMaterialization(
                asset_key=["quarantine", "dlq_purchases"],
                metadata={
                    "dagster/row_count": len(triage.quarantined),
                    "location": MetadataValue.path(triage.quarantine_file or ""),
                    "reasons": MetadataValue.json(dict(triage.reasons())),
                    "dlq_batch": triage.batch_id,
                },
            )
        )
    if triage.depth_after != cursor.last_depth:
        events.append(AssetObservation(asset_key=["dynamodb", "purchases"], metadata={"dlq_depth": triage.depth_after}))
        cursor.last_depth = triage.depth_after
    CloudWatchMetrics(clients.cloudwatch).put(
        {
            "PurchasesRedriven": triage.redriven_count,
            "PurchasesQuarantined": len(triage.quarantined),
            "DlqDepth": triage.depth_after,
        },
        {"Component": "dlq_sensor"},
    )
    if not (runs or events or triage.received):
        waiting = sum(len(p.ids) for p in cursor.pending)
        return SkipReason(
            f"DLQ empty; {waiting} redriven purchases not stored yet" if waiting else "DLQ empty, nothing pending"
        )
    if triage.received:
        publish_alert(clients.sns, clients.topic_arn(settings.alerts_topic), dlq_alert(triage))
        context.log.info(
            f"DLQ batch {triage.batch_id}: {triage.redriven_count} redriven, {len(triage.quarantined)} quarantined"
        )
    return SensorResult(run_requests=runs, cursor=cursor.dump(), asset_events=events)
