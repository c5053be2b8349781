"""Automation: the hourly bronze → silver → gold job, materialized five minutes after each hour closes.

A schedule plus sensors rather than automation conditions, because bronze's upstream is the
DynamoDB table, an external asset that emits no materialization events to react to: the clock is
the real trigger (an hour is complete once it has closed and the worker has drained what SNS
delivered in its last seconds, hence the five minutes). What changes an hour afterwards is
covered by sensors that know why it changed: ``late_data`` (new purchases for a closed hour) and
``dlq_redrive`` (redriven purchases stored). Failed blocking checks hold back what depends on
them inside each run, and ``alert_on_run_failure`` tells people.
"""

from dagster import AssetSelection, DefaultScheduleStatus, build_schedule_from_partitioned_job, define_asset_job

LAKEHOUSE_HOURLY = AssetSelection.groups("bronze", "silver", "gold")

hourly_lakehouse_job = define_asset_job(
    "hourly_lakehouse",
    selection=LAKEHOUSE_HOURLY,
    description="Bronze → silver → gold for an hour (or a range of hours, as one run), with the quality gates.",
)

hourly_schedule = build_schedule_from_partitioned_job(
    hourly_lakehouse_job,
    minute_of_hour=5,
    name="hourly_lakehouse_schedule",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Materializes the hour that just closed, bronze → silver → gold, at HH:05 UTC.",
)
