"""Fault injection: the whole path under each fault, through the fault proxy in front of the moto
server, and the zero-loss ledger afterwards.

For each fault: every purchase the API accepted is in DynamoDB or in quarantine, and after the
DLQ sensor has run (and the hour's runs it requested), DynamoDB = bronze = silver + quarantined
and gold totals equal silver totals for the hour.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pyspark.sql import SparkSession

from cart_api.app import create_app
from cart_api.runner import QueueRunner
from cart_api.settings import Settings
from cart_aws.aws import AwsClients
from cart_aws.provision import provision
from cart_dev.harness import hour_clock, poison_messages, run_sensor_until_done, settle
from cart_dev.local_api import ApiServer
from cart_dev.local_aws import MotoServer
from cart_dev.proxy import FaultProxy
from cart_lakehouse.lake import Lake
from cart_lakehouse.ledger import Entry, balanced, ledger, quarantined_dlq_records, render
from cart_lakehouse.local import local_resources, materialize_hours
from cart_lakehouse.partitions import Hour
from tests.conftest import API_KEY, SPARK_SETTINGS, VALID_PURCHASE

pytestmark = pytest.mark.e2e  # long end to end: `make test-quick` leaves it out

HOUR = Hour(datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2))


@dataclass
class System:
    """The stack with the fault proxy between every component and the local AWS."""

    settings: Settings  # direct to the moto server: what the test inspects with
    via_proxy: Settings  # what the API and the worker use
    proxy: FaultProxy
    lake_root: str
    spark: SparkSession
    accepted: list[str] = field(default_factory=list)

    @property
    def clients(self) -> AwsClients:
        return AwsClients(self.settings)

    def worker(self) -> QueueRunner:
        return QueueRunner(self.via_proxy, AwsClients(self.via_proxy, attempts=1), wait_seconds=1)

    def api(self) -> ApiServer:
        return ApiServer(create_app(self.via_proxy, clock=hour_clock(HOUR, seed=1)))

    def post(self, client: httpx.Client, n: int, key: str | None = None) -> httpx.Response:
        body = {**VALID_PURCHASE, "buyer_id": f"B{n:06d}", "purchase_date": HOUR.start.date().isoformat()}
        headers = {"X-API-Key": API_KEY} | ({"Idempotency-Key": key} if key else {})
        response = client.post("/purchases", json=body, headers=headers)
        if response.status_code == 202:
            self.accepted.append(response.json()["purchase_id"])
        return response

    def post_many(self, count: int) -> None:
        with self.api() as api, httpx.Client(base_url=api.url, timeout=30) as client:
            for n in range(count):
                assert self.post(client, n).status_code == 202

    def stored(self) -> int:
        return self.clients.item_count(self.settings.purchases_table)

    def finish(self) -> list[Entry]:
        """The DLQ sensor until it has nothing left, the hour's runs it asks for (or the schedule's
        run when it asks for none), then the ledger. (``make demo`` shows the schedule's run
        followed by the sensor's rerun; here one run per test keeps the suite short.)"""
        settle(self.worker(), self.clients)
        requests = run_sensor_until_done(self.settings, self.worker(), self.clients, self.lake_root)
        resources = local_resources(self.settings, self.lake_root, SPARK_SETTINGS)
        materialize_hours(resources, None, ("reference",))
        for request in requests:
            assert request.partition_key == HOUR.key
            materialize_hours(resources, [HOUR], tags=dict(request.tags))
        if not requests:
            materialize_hours(resources, [HOUR])
        entries = ledger(self.settings, self.clients, Lake.open(self.lake_root), [HOUR], self.accepted)
        assert balanced(entries), render(entries)
        return entries


@pytest.fixture
def system(moto_server: MotoServer, tmp_path: Path, spark: SparkSession) -> Iterator[System]:
    moto_server.reset()
    settings = Settings(
        aws_endpoint_url=moto_server.endpoint_url,
        api_keys={"tests": API_KEY},
        max_receive_count=2,
        visibility_timeout=2,
        rate_limit_per_second=0,
    )
    provision(settings)
    with FaultProxy(moto_server.endpoint_url, seed=5) as proxy:
        via_proxy = settings.model_copy(update={"aws_endpoint_url": proxy.url})
        yield System(settings, via_proxy, proxy, str(tmp_path / "lake"), spark)


def test_a_worker_killed_in_the_middle_of_a_batch_loses_and_duplicates_nothing(system: System) -> None:
    system.post_many(20)
    system.proxy.hang(only="sqs:DeleteMessageBatch")  # the worker writes its batch, then hangs deleting it
    env = {**os.environ, "CART_AWS_ENDPOINT_URL": system.proxy.url, "CART_WORKER_CONCURRENCY": "1"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "cart_api.runner", "--batch-size", "10", "--wait", "1"],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not system.proxy.stats.total_injected("hang") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert system.proxy.stats.total_injected("hang") == 1, "the worker never reached its delete"
        assert system.stored() == 10  # the batch is written, its messages are not deleted
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
    system.proxy.clear()

    # the killed batch reappears after the visibility timeout and is written again, idempotently
    system.finish()
    assert system.stored() == 20
    assert system.clients.queue_depth(system.settings.purchases_dlq) == 0


@pytest.mark.parametrize("fault", ["throttle", "unavailable"])
def test_dynamodb_throttling_or_outage_goes_to_the_dlq_and_is_redriven(system: System, fault: str) -> None:
    getattr(system.proxy, fault)(only="dynamodb:BatchWriteItem")
    system.post_many(15)
    settle(system.worker(), system.clients)  # retried with backoff, then dead-lettered on the last receive
    assert system.stored() == 0
    assert system.clients.queue_depth(system.settings.purchases_dlq) == 15
    assert system.proxy.stats.total_injected(fault) >= 15 // 10 * 2 * 5  # every attempt of every receive
    system.proxy.clear()

    system.finish()  # the sensor redrives them and reruns the hour once they are stored
    assert system.stored() == 15


def test_a_poison_message_is_quarantined_with_its_reason(system: System) -> None:
    system.post_many(10)
    poison_messages(system.clients, system.settings, 2, HOUR)
    system.finish()
    records = quarantined_dlq_records(Lake.open(system.lake_root))
    assert len(records) == 2
    assert all("number_of_installments" in str(r["reason"]) for r in records)
    assert system.stored() == 10


def test_the_local_aws_unreachable_during_traffic_refuses_cleanly_and_retries_keep_their_ids(
    system: System,
) -> None:
    keys = [str(uuid.uuid4()) for _ in range(12)]
    first: dict[str, Any] = {}
    with system.api() as api, httpx.Client(base_url=api.url, timeout=60) as client:
        for n, key in enumerate(keys[:6]):
            first[key] = system.post(client, n, key).json()["purchase_id"]
        system.proxy.refuse()
        refused = [system.post(client, n, key) for n, key in enumerate(keys[6:], start=6)]
        assert {r.status_code for r in refused} == {503}, [r.text for r in refused]
        assert all("retry" in r.text.lower() for r in refused)
        system.proxy.accept()
        for n, key in enumerate(keys):
            again = system.post(client, n, key)
            assert again.status_code == 202
            if key in first:  # a retry of an accepted purchase is the same purchase, published once
                assert again.json()["purchase_id"] == first[key]
    system.accepted = sorted(set(system.accepted))
    assert len(system.accepted) == 12
    system.finish()
    assert system.stored() == 12


def test_sns_failing_at_the_api_accepts_nothing_and_a_retry_succeeds(system: System) -> None:
    system.proxy.unavailable(only="sns")
    with system.api() as api, httpx.Client(base_url=api.url, timeout=60) as client:
        failed = system.post(client, 1, key="k-1")
        assert failed.status_code == 503
        assert json.loads(failed.text)["status"] == 503
        assert system.clients.queue_depth(system.settings.purchases_queue) == 0
        system.proxy.clear()
        assert system.post(client, 1, key="k-1").status_code == 202
    system.finish()
    assert system.stored() == 1
