"""Alerts to the alerts SNS topic: what went wrong (asset, partition), why, what to do, and a link to the run."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient


@dataclass(frozen=True)
class Alert:
    kind: str  # "run_failed", "check_failed", "dlq_depth", "source_shrunk", "freshness"
    title: str
    reason: str
    assets: tuple[str, ...] = ()
    partition: str | None = None
    run_url: str | None = None
    details: dict[str, object] = field(default_factory=dict)

    @property
    def subject(self) -> str:
        """SNS subjects are at most 100 ASCII characters."""
        text = f"[cart-lakehouse] {self.title}".encode("ascii", "replace").decode()
        return text[:100]

    def body(self) -> str:
        return json.dumps(asdict(self), default=str, sort_keys=True)


def publish_alert(sns: SNSClient, topic_arn: str, alert: Alert) -> str:
    """Publish one alert; returns the SNS message id."""
    answer = sns.publish(
        TopicArn=topic_arn,
        Subject=alert.subject,
        Message=alert.body(),
        MessageAttributes={"kind": {"DataType": "String", "StringValue": alert.kind}},
    )
    return answer["MessageId"]
