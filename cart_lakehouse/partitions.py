"""Hourly partitions of the lakehouse.

Every asset from bronze to gold is partitioned by ingest hour (UTC), the hour the API received
the purchase: it is what DynamoDB indexes, so one hour is read without a scan, and late data
for an hour lands in that same hour. The hours themselves (keys, paths) are ``cart_lakehouse.hours``.
"""

from __future__ import annotations

from dagster import HourlyPartitionsDefinition

from cart_lakehouse.hours import PARTITION_FORMAT, Hour, hours_between, whole_days
from cart_lakehouse.settings import lake_settings

__all__ = ["PARTITION_FORMAT", "Hour", "hourly_partitions", "hours_between", "whole_days"]

hourly_partitions = HourlyPartitionsDefinition(
    start_date=lake_settings().partitions_start, timezone="UTC", fmt=PARTITION_FORMAT
)
