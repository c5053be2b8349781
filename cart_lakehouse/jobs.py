"""Jobs: the hourly bronze → silver → gold run that schedules and sensors request."""

from dagster import AssetSelection, define_asset_job

LAKEHOUSE_HOURLY = AssetSelection.groups("bronze", "silver", "gold")

hourly_lakehouse_job = define_asset_job(
    "hourly_lakehouse",
    selection=LAKEHOUSE_HOURLY,
    description="Bronze → silver → gold for an hour (or a range of hours, as one run), with the quality gates.",
)
