"""A run failure becomes an alert on the alerts SNS topic: the assets and partition of the run,
the reason (the failed blocking checks, or the error), and a link to the run in the Dagster UI."""

from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    DagsterEventType,
    DefaultSensorStatus,
    RunFailureSensorContext,
    run_failure_sensor,
)

from cart_lakehouse.alerts import Alert, publish_alert
from cart_lakehouse.resources import AwsResource


def failed_checks(context: RunFailureSensorContext) -> list[str]:
    """The ERROR checks that failed in the run, as ``asset:check``. A failed WARN check (such as
    ``bronze/purchases:source_not_shrunk``, which publishes its own alert) stops nothing, so it is
    not given as the reason a run failed."""
    records = context.instance.get_records_for_run(
        context.dagster_run.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION
    ).records
    failed = []
    for record in records:
        event = record.event_log_entry.dagster_event
        data = event.event_specific_data if event else None
        if isinstance(data, AssetCheckEvaluation) and not data.passed and data.severity == AssetCheckSeverity.ERROR:
            failed.append(f"{data.asset_key.to_user_string()}:{data.check_name}")
    return failed


def run_assets(context: RunFailureSensorContext) -> tuple[str, ...]:
    """The assets the run was to materialize (its selection, or what it planned)."""
    run = context.dagster_run
    if run.asset_selection:
        return tuple(sorted(k.to_user_string() for k in run.asset_selection))
    planned = context.instance.get_records_for_run(
        run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION_PLANNED
    ).records
    keys = {r.event_log_entry.dagster_event.asset_key for r in planned if r.event_log_entry.dagster_event}
    return tuple(sorted(k.to_user_string() for k in keys if k is not None))


def run_alert(context: RunFailureSensorContext, ui_url: str) -> Alert:
    run = context.dagster_run
    checks = failed_checks(context)
    error = context.failure_event.message or "the run failed"
    reason = f"blocking checks failed: {', '.join(checks)}" if checks else error
    assets = run_assets(context)
    partition = run.tags.get("dagster/partition") or (
        f"{run.tags['dagster/asset_partition_range_start']}..{run.tags['dagster/asset_partition_range_end']}"
        if "dagster/asset_partition_range_start" in run.tags
        else None
    )
    return Alert(
        kind="check_failed" if checks else "run_failed",
        title=f"{'Quality gate' if checks else 'Run'} failed: {', '.join(assets) or run.job_name}"
        + (f" [{partition}]" if partition else ""),
        reason=reason,
        assets=assets,
        partition=partition,
        run_url=f"{ui_url.rstrip('/')}/runs/{run.run_id}",
        details={"run_id": run.run_id, "job": run.job_name, "failed_checks": checks},
    )


@run_failure_sensor(
    name="alert_on_run_failure",
    description="Publishes an alert to the alerts SNS topic for every failed run (failed quality gates included).",
    default_status=DefaultSensorStatus.RUNNING,
    monitor_all_code_locations=False,
)
def alert_on_run_failure(context: RunFailureSensorContext, aws: AwsResource) -> None:
    settings = aws.settings()
    clients = aws.clients()
    alert = run_alert(context, settings.dagster_ui_url)
    message_id = publish_alert(clients.sns, clients.topic_arn(settings.alerts_topic), alert)
    context.log.info(f"alert {message_id} published: {alert.title}")
