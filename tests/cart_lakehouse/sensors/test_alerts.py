"""A failed run and a failed quality gate arrive as alerts on the alerts SNS topic."""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    DagsterEventType,
    DagsterInstance,
    MaterializeResult,
    asset,
    build_run_status_sensor_context,
    materialize,
)

from cart_api.settings import Settings
from cart_aws.aws import AwsClients
from cart_lakehouse.partitions import Hour, hourly_partitions
from cart_lakehouse.resources import AwsResource, LakeResource
from cart_lakehouse.sensors.alerts import alert_on_run_failure
from tests.cart_lakehouse.checks.test_checks import _pipeline, silver_row

HOUR = Hour(datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2))


def subscribe_alerts(aws: AwsClients, settings: Settings) -> str:
    url = aws.sqs.create_queue(QueueName="alerts-inbox")["QueueUrl"]
    aws.sns.subscribe(
        TopicArn=aws.topic_arn(settings.alerts_topic),
        Protocol="sqs",
        Endpoint=aws.queue_arn("alerts-inbox"),
        Attributes={"RawMessageDelivery": "true"},
    )
    return url


def alerts(aws: AwsClients, url: str) -> list[dict[str, Any]]:
    messages = aws.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
    return [json.loads(m["Body"]) for m in messages]


def run_sensor_on_failure(instance: DagsterInstance, run_id: str, settings: Settings) -> None:
    run = instance.get_run_by_id(run_id)
    assert run is not None
    (record,) = instance.get_records_for_run(run_id, of_type=DagsterEventType.RUN_FAILURE).records
    event = record.event_log_entry.dagster_event
    assert event is not None
    context = build_run_status_sensor_context(
        sensor_name="alert_on_run_failure",
        dagster_event=event,
        dagster_instance=instance,
        dagster_run=run,
        resources={"aws": AwsResource(aws_endpoint_url=settings.aws_endpoint_url)},
    ).for_run_failure()
    alert_on_run_failure(context)


def test_a_failed_quality_gate_is_alerted_with_the_check_and_a_link(
    settings: Settings, aws: AwsClients, tmp_path: Path
) -> None:
    inbox = subscribe_alerts(aws, settings)
    instance = DagsterInstance.ephemeral()
    defs, _ = _pipeline([silver_row(total_amount=Decimal("-1.00"))])
    result = materialize(
        defs,
        partition_key=HOUR.key,
        resources={"lake": LakeResource(root=str(tmp_path))},
        instance=instance,
        raise_on_error=False,
    )
    assert not result.success
    run_sensor_on_failure(instance, result.run_id, settings)

    (alert,) = alerts(aws, inbox)
    assert alert["kind"] == "check_failed"
    assert alert["partition"] == HOUR.key
    assert "silver/purchases:contract" in alert["reason"]
    assert alert["run_url"].endswith(f"/runs/{result.run_id}")
    assert "silver/purchases" in alert["assets"]


def test_a_failed_run_is_alerted_with_the_error(settings: Settings, aws: AwsClients) -> None:
    inbox = subscribe_alerts(aws, settings)
    instance = DagsterInstance.ephemeral()

    @asset(partitions_def=hourly_partitions)
    def breaks() -> None:
        raise RuntimeError("the disk is full")

    result = materialize([breaks], partition_key=HOUR.key, instance=instance, raise_on_error=False)
    run_sensor_on_failure(instance, result.run_id, settings)
    (alert,) = alerts(aws, inbox)
    assert alert["kind"] == "run_failed"
    assert alert["assets"] == ["breaks"]
    assert "breaks" in alert["reason"]


def test_a_failed_warn_check_is_not_given_as_the_reason_a_run_failed(settings: Settings, aws: AwsClients) -> None:
    inbox = subscribe_alerts(aws, settings)
    instance = DagsterInstance.ephemeral()

    @asset(check_specs=[AssetCheckSpec("looks_odd", asset="warns")])
    def warns() -> MaterializeResult:  # type: ignore[type-arg]
        return MaterializeResult(
            check_results=[AssetCheckResult(check_name="looks_odd", passed=False, severity=AssetCheckSeverity.WARN)]
        )

    @asset(deps=[warns])
    def breaks() -> None:
        raise RuntimeError("the disk is full")

    result = materialize([warns, breaks], instance=instance, raise_on_error=False)
    assert [e.passed for e in result.get_asset_check_evaluations()] == [False]
    run_sensor_on_failure(instance, result.run_id, settings)
    (alert,) = alerts(aws, inbox)
    assert alert["kind"] == "run_failed"
    assert "looks_odd" not in alert["reason"]
    assert "breaks" in alert["reason"]
