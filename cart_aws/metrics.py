"""Operational metrics in CloudWatch (namespace ``CartLakehouse``): the worker and the sensors
report what they stored, failed, redrove and quarantined, and the DLQ depth.

Metrics never break the pipeline: a failed PutMetricData is logged and dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient

NAMESPACE = "CartLakehouse"
log = logging.getLogger(__name__)


class MetricsSink(Protocol):
    def put(self, values: Mapping[str, float], dimensions: Mapping[str, str] | None = None) -> None: ...


class CloudWatchMetrics:
    """Counts as CloudWatch metrics, all values of one call in one PutMetricData."""

    def __init__(self, cloudwatch: CloudWatchClient, namespace: str = NAMESPACE) -> None:
        self.cloudwatch = cloudwatch
        self.namespace = namespace

    def put(self, values: Mapping[str, float], dimensions: Mapping[str, str] | None = None) -> None:
        data = [
            {
                "MetricName": name,
                "Value": float(value),
                "Unit": "Count",
                "Dimensions": [{"Name": k, "Value": v} for k, v in (dimensions or {}).items()],
            }
            for name, value in values.items()
        ]
        if not data:
            return
        try:
            for start in range(0, len(data), 1000):  # the API's limit per call
                self.cloudwatch.put_metric_data(Namespace=self.namespace, MetricData=data[start : start + 1000])  # type: ignore[arg-type]
        except (BotoCoreError, ClientError) as exc:
            log.warning("could not put metrics %s: %s", sorted(values), exc)


class NoMetrics:
    def put(self, values: Mapping[str, float], dimensions: Mapping[str, str] | None = None) -> None:
        return None
