"""The project's Spark settings, with no Dagster in them: the in-process session (Dagster's
``LazyPySparkResource``), a Spark Connect server's JVM (``cart_dev.spark_server``) and the EMR
Serverless job's session are built from the same values."""

from __future__ import annotations

from typing import Any

from cart_lakehouse.settings import LakeSettings

# set by whoever starts the JVM (spark-submit, EMR Serverless), not by the job's session builder
SUBMIT_ONLY = ("spark.master", "spark.driver.memory", "spark.driver.extraJavaOptions")
# settings of a session (not of the JVM): a Spark Connect client sets them on its server-side session
SESSION_KEYS = (
    "spark.sql.session.timeZone",
    "spark.sql.shuffle.partitions",
    "spark.sql.sources.partitionOverwriteMode",
    "spark.sql.parquet.outputTimestampType",
)


def local_config(settings: LakeSettings) -> dict[str, Any]:
    """A Spark of its own in this process: the JVM's settings and the session's."""
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
        **({"spark.driver.extraJavaOptions": settings.spark_java_options} if settings.spark_java_options else {}),
    }


def spark_config(settings: LakeSettings) -> dict[str, Any]:
    """One Spark session per process (the resource creates it on first use, then reuses it).

    With ``CART_SPARK_REMOTE`` the session is a Spark Connect client of that long-lived server,
    whose JVM was started with ``local_config``: only the session's settings travel. Otherwise
    the process starts its own JVM.
    """
    config = local_config(settings)
    if settings.spark_remote:
        return {"spark.remote": settings.spark_remote, **{k: config[k] for k in SESSION_KEYS}}
    return config


def session_config(settings: LakeSettings) -> dict[str, Any]:
    """``local_config`` for a session inside a submitted application: the master and the driver's
    memory are the submitter's (a builder's ``spark.master`` would override spark-submit's)."""
    return {k: v for k, v in local_config(settings).items() if k not in SUBMIT_ONLY}
