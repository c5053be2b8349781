"""The project's Spark settings, with no Dagster in them: the in-process session (Dagster's
``LazyPySparkResource``) and the EMR Serverless job's session are built from the same values."""

from __future__ import annotations

from typing import Any

from cart_lakehouse.settings import LakeSettings

# set by whoever starts the JVM (spark-submit, EMR Serverless), not by the job's session builder
SUBMIT_ONLY = ("spark.master", "spark.driver.memory")


def spark_config(settings: LakeSettings) -> dict[str, Any]:
    """One Spark session per process (the resource creates it on first use, then reuses it)."""
    return {
        "spark.master": settings.spark_master,
        "spark.app.name": "cart-lakehouse",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(settings.spark_shuffle_partitions),
        "spark.sql.sources.partitionOverwriteMode": "dynamic",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.memory": "2g",
    }


def session_config(settings: LakeSettings) -> dict[str, Any]:
    """``spark_config`` for a session inside a submitted application: the master and the driver's
    memory are the submitter's (a builder's ``spark.master`` would override spark-submit's)."""
    return {k: v for k, v in spark_config(settings).items() if k not in SUBMIT_ONLY}
