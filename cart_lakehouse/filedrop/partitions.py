"""The file drop's partitions: one dynamic partition per file set, added by the landing sensor, so
every drop shows in the Dagster UI and can be run again."""

from __future__ import annotations

from typing import Any

from dagster import DynamicPartitionsDefinition

FILEDROP_JOB = "filedrop_job"

filedrop_sets = DynamicPartitionsDefinition(name="filedrop_sets")

# the bronze asset's op (Dagster names it from the asset key) and the run config that loads an
# incomplete set anyway, as the sensor's alert and the step's failure tell people to launch it
BRONZE_OP = "filedrop__bronze"
FORCE_RUN_CONFIG: dict[str, Any] = {"ops": {BRONZE_OP: {"config": {"force": True}}}}
