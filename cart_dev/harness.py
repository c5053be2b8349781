"""Helpers shared by ``cart-demo`` and the fault tests: a clock inside one hour, draining the queue
until progress stops, ticking the real DLQ sensor, and contract-breaking messages."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from dagster import DagsterInstance, RunRequest, SensorResult, SkipReason, build_sensor_context

from cart_api.runner import QueueRunner
from cart_api.settings import Settings
from cart_aws.aws import AwsClients
from cart_lakehouse.partitions import Hour
from cart_lakehouse.resources import AwsResource, LakeResource
from cart_lakehouse.sensors.dlq import DlqCursor, dlq_redrive

POISON_PREFIX = "00000000-0000-4000-8000-"  # the ids of the demo's contract-breaking messages


def hour_clock(hour: Hour, seed: int) -> Callable[[], datetime]:
    """A clock that reads a random moment of ``hour`` (seeded): the API stamps purchases into it."""
    rng = random.Random(seed)
    return lambda: hour.start + timedelta(microseconds=rng.randrange(3_600_000_000))


@contextmanager
def worker_running(runner: QueueRunner, concurrency: int = 2) -> Iterator[QueueRunner]:
    """The worker polling in the background while the body runs (as ``cart-worker`` would), so the
    queue stays short; on exit it finishes the batches it holds."""
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop, concurrency), name="demo-worker", daemon=True)
    thread.start()
    try:
        yield runner
    finally:
        stop.set()
        thread.join()


def settle(
    runner: QueueRunner,
    clients: AwsClients,
    idle_timeout: float = 60.0,
    report: Callable[[str], None] | None = None,
    report_every: float = 5.0,
    concurrency: int = 4,
) -> None:
    """Run the worker (``concurrency`` polling threads) until the purchases queue is empty, retried
    messages included.

    The wait is bounded by progress, not by the clock: it gives up only when for ``idle_timeout``
    seconds neither the queue, the DLQ nor the worker's received count changed. ``report``
    receives a progress line (queue depth, the worker's totals, DLQ depth) every ``report_every``
    seconds.
    """
    queue, dlq = runner.settings.purchases_queue, runner.settings.purchases_dlq
    stats = runner.stats
    last_state: tuple[int, int, int] | None = None
    last_progress = last_report = time.monotonic()
    with worker_running(runner, concurrency):
        while True:
            depth = clients.queue_depth(queue)
            state = (depth, clients.queue_depth(dlq), stats.received)
            now = time.monotonic()
            if state != last_state:
                last_state, last_progress = state, now
            if report is not None and now - last_report >= report_every:
                report(
                    f"queue depth {depth}, stored {stats.stored}, dead-lettered {stats.dead_lettered}, "
                    f"retried {stats.retried}, DLQ depth {state[1]}"
                )
                last_report = now
            if depth == 0:  # visible and in flight: nothing is left in a worker's hands either
                return
            if now - last_progress > idle_timeout:
                raise TimeoutError(
                    f"the purchases queue stopped draining: {depth} messages left and no progress for "
                    f"{idle_timeout:.0f} s (is the worker failing? see its log)"
                )
            time.sleep(0.2)  # the interval between looks at the queue; the worker threads do the work


def tick_dlq_sensor(settings: Settings, lake_root: str, cursor: str | None) -> SensorResult | SkipReason:
    """One evaluation of the real ``dlq_redrive`` sensor, as the Dagster daemon would run it."""
    context = build_sensor_context(
        cursor=cursor,
        instance=DagsterInstance.ephemeral(),
        resources={
            "aws": AwsResource(aws_endpoint_url=settings.aws_endpoint_url, aws_region=settings.aws_region),
            "lake": LakeResource(
                root=lake_root, aws_endpoint_url=settings.aws_endpoint_url, aws_region=settings.aws_region
            ),
        },
    )
    result = dlq_redrive(context)
    assert isinstance(result, SensorResult | SkipReason)
    return result


def run_sensor_until_done(
    settings: Settings,
    runner: QueueRunner,
    clients: AwsClients,
    lake_root: str,
    idle_ticks: int = 10,
    report: Callable[[str], None] | None = None,
) -> list[RunRequest]:
    """Tick the DLQ sensor, letting the worker store what it redrives, until nothing is pending.

    Gives up only after ``idle_ticks`` ticks in a row that changed neither the DLQ's depth nor
    the sensor's pending hours (a large DLQ takes several ticks, one batch each)."""
    cursor: str | None = None
    requests: list[RunRequest] = []
    idle = 0
    last: tuple[int, int] | None = None
    while idle < idle_ticks:
        result = tick_dlq_sensor(settings, lake_root, cursor)
        if isinstance(result, SensorResult):
            requests += list(result.run_requests or [])
            cursor = result.cursor
        settle(runner, clients, report=report)
        pending, depth = len(DlqCursor.parse(cursor).pending), clients.queue_depth(settings.purchases_dlq)
        if not pending and depth == 0:
            return requests
        idle = idle + 1 if (pending, depth) == last else 0
        last = (pending, depth)
        if report is not None:
            report(f"DLQ sensor: DLQ depth {depth}, hours waiting for their redriven purchases {pending}")
    raise TimeoutError(f"the DLQ sensor made no progress in {idle_ticks} ticks")


def poison_messages(clients: AwsClients, settings: Settings, count: int, hour: Hour) -> None:
    """Contract-breaking messages published straight to SNS, as a broken producer would."""
    arn = clients.topic_arn(settings.purchases_topic)
    for i in range(count):
        body = {
            "purchase_id": f"{POISON_PREFIX}{i:012d}",
            "buyer_id": f"B{i:06d}",
            "product_id": "P0001",
            "number_of_installments": 99,  # the contract allows 1..24
            "total_amount": -5.0,  # and positive amounts only
            "purchase_date": hour.start.date().isoformat(),
            "received_at": hour.start.isoformat(),
        }
        clients.sns.publish(TopicArn=arn, Message=json.dumps(body))
