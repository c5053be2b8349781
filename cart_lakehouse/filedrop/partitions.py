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

# every run of the file-drop job carries this tag, and the run queue lets one such run go at a time
# (cart_dev/supervisor.py writes the limit; a deployment's dagster.yaml needs the same): two sets'
# KPI steps recomputing the same order date from silver at once would let the one that read silver
# first merge last, leaving that date without the other set's rows
SERIAL_TAG = "cart/filedrop_serial"
SERIAL_LIMIT = {"key": SERIAL_TAG, "limit": 1}
