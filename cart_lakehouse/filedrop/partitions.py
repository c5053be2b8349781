"""The file drop's partitions: one dynamic partition per file set, added by the landing sensor, so
every drop shows in the Dagster UI and can be run again."""

from __future__ import annotations

from dagster import DynamicPartitionsDefinition

FILEDROP_JOB = "filedrop_job"

filedrop_sets = DynamicPartitionsDefinition(name="filedrop_sets")
