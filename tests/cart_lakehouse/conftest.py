"""Fixtures of the lakehouse tests. Spark starts once per test session (it takes seconds)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pyspark.sql import SparkSession

from cart_lakehouse.resources import spark_config
from cart_lakehouse.settings import LakeSettings

SPARK_SETTINGS = LakeSettings(spark_master="local[2]", spark_shuffle_partitions=2)


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    """One local Spark session, configured as the ``pyspark`` resource configures production's.

    Dagster's ``LazyPySparkResource`` built with ``spark_config(SPARK_SETTINGS)`` gets this same
    session back (``getOrCreate``), so materializing in tests does not start a second one.
    """
    builder = SparkSession.builder
    for key, value in spark_config(SPARK_SETTINGS).items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
