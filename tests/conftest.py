"""Shared fixtures: one moto server per test session (the project's local AWS, started on a free
port), brought back to its freshly provisioned state for each test that asks for AWS."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from pyspark.sql import SparkSession

from cart_api.settings import Settings
from cart_aws.aws import AwsClients
from cart_aws.provision import provision
from cart_dev.local_aws import MotoServer
from cart_lakehouse.jobs.spark import spark_config  # not .resources: Dagster and dbt, 5 s before xdist starts
from cart_lakehouse.settings import LakeSettings

VALID_PURCHASE: dict[str, Any] = {
    "buyer_id": "B000123",
    "product_id": "P0042",
    "number_of_installments": 3,
    "total_amount": 129.9,
    "purchase_date": "2026-01-15",
}
API_KEY = "test-key"


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


@pytest.fixture
def settings(moto_server: MotoServer) -> Settings:
    """Settings pointing at a moto server that holds the provisioned stack and nothing else.

    The first test of a process (per distinct settings) resets the server, provisions it and keeps
    that as a checkpoint in the server; every later one restores the checkpoint: moto's reset, then
    copies of the provisioned backends (``cart_dev.moto_checkpoint``). One request instead of
    provisioning's ~56 (0.55 s of CPU per test, ~150 tests); tests/cart_dev/test_moto_checkpoint.py
    checks that a restored server is what provisioning builds.
    """
    settings = Settings(
        aws_endpoint_url=moto_server.endpoint_url,
        api_keys={"tests": API_KEY},
        max_receive_count=2,
        visibility_timeout=30,
    )
    # named after everything provisioning reads (the environment may change a setting)
    name = "provisioned-" + hashlib.sha256(settings.model_dump_json().encode()).hexdigest()[:16]
    if not moto_server.restore(name):
        moto_server.reset()
        provision(settings)
        moto_server.checkpoint(name)
    return settings


@pytest.fixture
def aws(settings: Settings) -> AwsClients:
    return AwsClients(settings)


def queue_depth(aws: AwsClients, queue: str) -> int:
    return aws.queue_depth(queue)


def receive_all(aws: AwsClients, queue: str) -> list[dict[str, Any]]:
    """Every message currently visible in a queue (received, so hidden for the timeout)."""
    url = aws.queue_url(queue)
    out: list[dict[str, Any]] = []
    while True:
        got = aws.sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        ).get("Messages", [])
        if not got:
            return out
        out.extend(dict(m) for m in got)


SPARK_SETTINGS = LakeSettings(spark_master="local[2]", spark_shuffle_partitions=2)
# for the JVMs a test starts that live a minute or two on a few rows, on two shared cores: the C1
# compiler alone and the serial collector spend about half the CPU of the defaults (C2 and parallel
# GC threads per JVM); what Spark computes is the same. (The session below lives through a worker's
# whole run, where C2 pays off: it keeps the defaults.)
SHORT_LIVED_JVM = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


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
