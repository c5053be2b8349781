"""Freshness benchmark: how long after an hour closes its purchases are readable in gold, by
automation alone (goal: 2 minutes).

What runs, all real parts: the project's moto server; the API under uvicorn (in this process);
the worker polling the purchases queue (a thread, as ``cart-worker``); the real ``hour_closed``
sensor, evaluated every 15 s as the Dagster daemon does; and the run it requests, launched as
Dagster launches a run: a new process (``dagster job execute -m cart_lakehouse.definitions -j
hourly_lakehouse`` with the request's tags) on a Dagster instance in a temporary ``DAGSTER_HOME``,
with production's definitions and resources (read from ``CART_*`` settings: Spark ``local[2]``,
4 shuffle partitions). So the run pays what a launched run pays: the process, the code load, then
bronze → silver → gold with every check. Its Spark is, as under ``make run``, a Spark Connect
server started before the traffic and warmed up on generated purchases (``CART_SPARK_REMOTE``);
with ``--own-spark`` the run starts a Spark of its own (and pays its start and a cold JIT).

The hour's end: waiting for a real one is impractical, so the API (which stamps ``received_at``,
hence the ingest hour) and the sensor read a clock shifted so that the end of the last closed hour
(a partition that exists) falls ``--last-seconds`` after the traffic starts; the clock runs at
real speed, so every interval is real. Before the traffic, the hour's earlier purchases
(``--hour-purchases``) are put straight into DynamoDB and ``reference/products`` is materialized
(both are there in production when an hour closes). Then ``--rate`` purchases/s are posted through
the API during the hour's last ``--last-seconds`` (``--after-rate`` keeps traffic going into the
next hour, so the queue is never empty and the sensor's grace decides).

The sensor's ticks are phased so the first one after the hour's end comes ``--tick-phase`` seconds
after it (default 14.9 s: the worst case of the daemon's 15 s interval, 7.5 s on average). The clock
starts at the hour's end and stops when gold/sales_hourly holds the hour's row counting every
purchase DynamoDB holds for it (polled every 0.5 s while the run goes on). Each step's time comes
from the run's Dagster event log. Afterwards the HH:05 schedule is evaluated against the instance:
it must skip the hour.

Not measured: the daemon's loop and the run queue's dequeue (a second or two in ``dagster dev``;
a launch also waits behind a run already running, as ``make run`` allows one run at a time), and
the code server (the run process loads the code itself). Run: ``make bench-freshness`` or
``uv run python -m bench.freshness``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dagster import (
    DagsterEventType,
    DagsterInstance,
    RunRequest,
    RunsFilter,
    SensorResult,
    SkipReason,
    build_schedule_context,
    build_sensor_context,
)

from bench.report import machine, say, write_section
from cart_api.app import create_app
from cart_api.runner import QueueRunner
from cart_api.settings import Settings
from cart_api.traffic import TrafficConfig, TrafficReport, run_traffic
from cart_aws.aws import AwsClients
from cart_aws.provision import provision
from cart_dev import spark_server
from cart_dev.harness import worker_running
from cart_dev.local_api import ApiServer
from cart_dev.local_aws import MotoServer
from cart_dev.seed import put_purchases, stored_purchases
from cart_lakehouse.automation import hourly_lakehouse_job, hourly_schedule
from cart_lakehouse.checks.reconciliation import read_files
from cart_lakehouse.lake import Lake
from cart_lakehouse.layout import GOLD_TABLES
from cart_lakehouse.local import local_resources, materialize_hours
from cart_lakehouse.partitions import Hour
from cart_lakehouse.resources import AwsResource
from cart_lakehouse.sensors.hour_closed import INTERVAL_SECONDS, SENSOR_NAME, hour_closed_sensor
from cart_lakehouse.sensors.late_data import hour_count
from cart_lakehouse.settings import LakeSettings

API_KEY = "bench-key"
GOAL_SECONDS = 120.0
STEP_EVENTS = {DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE}
RUN_EVENTS = {DagsterEventType.RUN_START, DagsterEventType.RUN_SUCCESS, DagsterEventType.RUN_FAILURE}


@dataclass
class Row:
    event: str
    at: float | None  # seconds after the hour's end
    took: float | None = None
    note: str = ""


@dataclass
class VirtualClock:
    """Real time shifted by ``offset``: intervals are real, the hour's end comes when we choose."""

    offset: timedelta = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def real_epoch(self, moment: datetime) -> float:
        """The real ``time.time()`` at which this clock reads ``moment``."""
        return (moment - self.offset).timestamp()


@dataclass
class QueueWatch:
    """Samples the purchases queue's depth every second; remembers when it was first empty after
    the hour's end."""

    clients: AwsClients
    queue: str
    hour_end_epoch: float
    first_empty: float | None = None
    depth_at_end: int | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.wait(1.0):
            now = time.time()
            if now < self.hour_end_epoch:
                continue
            depth = self.clients.queue_depth(self.queue)
            if self.depth_at_end is None:
                self.depth_at_end = depth
            if depth == 0 and self.first_empty is None:
                self.first_empty = now - self.hour_end_epoch


def traffic(url: str, count: int, rate: float, seed: int) -> TrafficReport:
    config = TrafficConfig(url, API_KEY, count=count, rate=rate, invalid_share=0.0, seed=seed, progress=False)
    return asyncio.run(run_traffic(config))


def gold_purchases(lake: Lake, hour: Hour) -> int | None:
    """The hour's purchase count in gold/sales_hourly, or None while it has no row."""
    try:
        table = read_files(lake, GOLD_TABLES["sales_hourly"].files([hour]))
    except (OSError, ValueError):  # a file replaced while read: look again
        return None
    rows = table.to_pylist() if table is not None else []
    return int(rows[0]["purchases"]) if rows else None


def tick_until_launched(
    clock: VirtualClock, hour: Hour, endpoint: str, instance: DagsterInstance, phase: float
) -> tuple[RunRequest, float]:
    """Evaluate the real sensor every INTERVAL_SECONDS, the first tick after the hour's end
    ``phase`` seconds after it, until it requests a run; returns it and when (s after the end)."""
    sensor = hour_closed_sensor(clock.now)
    resources = {"aws": AwsResource(aws_endpoint_url=endpoint)}
    cursor: str | None = None
    k = -int((hour.end - clock.now()).total_seconds() // INTERVAL_SECONDS) - 1
    while True:
        due = hour.end + timedelta(seconds=phase + k * INTERVAL_SECONDS)
        k += 1
        wait = (due - clock.now()).total_seconds()
        if wait < 0:
            continue
        time.sleep(wait)  # the daemon's interval: ticks come at these times, whatever the queue does
        context = build_sensor_context(cursor=cursor, instance=instance, resources=resources, sensor_name=SENSOR_NAME)
        result = sensor(context)
        at = (clock.now() - hour.end).total_seconds()
        if isinstance(result, SensorResult) and result.run_requests:
            (request,) = result.run_requests
            return request, at
        message = result.skip_message if isinstance(result, SkipReason) else ""
        if isinstance(result, SensorResult):
            cursor = result.cursor
            message = result.skip_reason.skip_message if result.skip_reason else ""
        say(f"sensor at {at:+.1f} s: {message}")
        if at > 240:
            raise RuntimeError(f"the hour_closed sensor launched nothing within {at:.0f} s of the hour's end")


def launch(request: RunRequest, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """The run as the daemon launches it: a new process executing the job with the request's tags."""
    tags = {
        **request.tags,
        "dagster/partition": request.partition_key or "",
        "dagster/sensor_name": SENSOR_NAME,
        "dagster/run_key": request.run_key or "",
    }
    dagster = str(Path(sys.executable).with_name("dagster"))
    command = [dagster, "job", "execute", "-m", "cart_lakehouse.definitions", "-j", hourly_lakehouse_job.name]
    with log.open("wb") as out:
        return subprocess.Popen([*command, "--tags", json.dumps(tags)], env=env, stdout=out, stderr=subprocess.STDOUT)


def step_rows(instance: DagsterInstance, run_id: str, hour_end_epoch: float) -> list[Row]:
    """Run start/end and each step's start and duration, from the run's event log."""
    records = instance.get_records_for_run(run_id, of_type=STEP_EVENTS | RUN_EVENTS).records
    rows: list[Row] = []
    started: dict[str, float] = {}
    for record in records:
        entry = record.event_log_entry
        kind = entry.dagster_event.event_type if entry.dagster_event else None
        at = entry.timestamp - hour_end_epoch
        if kind == DagsterEventType.RUN_START:
            rows.append(Row("run started", at))
        elif kind == DagsterEventType.STEP_START and entry.step_key:
            started[entry.step_key] = entry.timestamp
        elif kind in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE) and entry.step_key:
            begin = started.get(entry.step_key, entry.timestamp)
            failed = " (FAILED)" if kind == DagsterEventType.STEP_FAILURE else ""
            rows.append(Row(f"step {entry.step_key}{failed}", begin - hour_end_epoch, entry.timestamp - begin))
        elif kind in (DagsterEventType.RUN_SUCCESS, DagsterEventType.RUN_FAILURE):
            rows.append(Row(f"run {'succeeded' if kind == DagsterEventType.RUN_SUCCESS else 'FAILED'}", at))
    return rows


def run_bench(args: argparse.Namespace, workdir: Path) -> tuple[list[Row], list[tuple[str, bool, str]]]:
    lake_root, home = workdir / "lake", workdir / "dagster"
    home.mkdir()
    with MotoServer() as moto, contextlib.ExitStack() as exits:
        settings = Settings(aws_endpoint_url=moto.endpoint_url, api_keys={"bench": API_KEY}, rate_limit_per_second=0)
        provision(settings)
        clients = AwsClients(settings)
        hour = Hour(datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1))
        instance = DagsterInstance.local_temp(str(home))

        say(f"putting {args.hour_purchases} earlier purchases of {hour.key} into DynamoDB; materializing products")
        put_purchases(clients, settings.purchases_table, stored_purchases(hour.start, args.hour_purchases, seed=11))
        materialize_hours(local_resources(settings, str(lake_root)), None, ("reference",))
        spark_env = {}
        if args.spark_warmup is not None:  # as make run: a Spark Connect server the run attaches to
            url = exits.enter_context(spark_server.serving(LakeSettings()))
            say(f"Spark Connect server on {url}: warming it up on {args.spark_warmup} generated purchases")
            say(f"warmed up in {spark_server.warm_up(url, args.spark_warmup):.0f} s")
            spark_env = {"CART_SPARK_REMOTE": url}

        clock = VirtualClock()
        app = create_app(settings, clock=clock.now)
        worker = QueueRunner(settings)
        lake = Lake.open(str(lake_root))
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "CART_AWS_ENDPOINT_URL": moto.endpoint_url,
            "CART_LAKE_ROOT": str(lake_root),
            **spark_env,
        }
        with ApiServer(app) as api, worker_running(worker, settings.worker_concurrency):
            count = round(args.rate * args.last_seconds)
            # the hour ends --last-seconds from now on the shifted clock
            clock.offset = hour.end - timedelta(seconds=args.last_seconds) - datetime.now(UTC)
            end_epoch = clock.real_epoch(hour.end)
            watch = QueueWatch(clients, settings.purchases_queue, end_epoch)
            threading.Thread(target=watch.run, name="queue-watch", daemon=True).start()
            reports: list[TrafficReport] = []

            def post() -> None:
                reports.append(traffic(api.url, count, args.rate, seed=21))
                if args.after_rate:
                    after = round(args.after_rate * (args.after_seconds))
                    reports.append(traffic(api.url, after, args.after_rate, seed=22))

            say(f"posting {count} purchases at {args.rate}/s through the API in the last {args.last_seconds} s")
            poster = threading.Thread(target=post, name="traffic", daemon=True)
            poster.start()
            request, launched_at = tick_until_launched(clock, hour, moto.endpoint_url, instance, args.tick_phase)
            say(f"sensor at {launched_at:+.1f} s: launching ({request.tags.get('cart/launch_reason')})")

            log = workdir / "run.log"
            spawned = time.time()
            process = launch(request, env, log)
            gold_at: float | None = None
            expected: int | None = None
            seen: int | None = None
            while gold_at is None:
                done = process.poll() is not None
                seen = gold_purchases(lake, hour)
                if seen is not None:
                    expected = hour_count(clients, settings.purchases_table, settings.ingest_hour_index, hour)
                    if seen == expected:
                        gold_at = time.time() - end_epoch
                if done:
                    break
                time.sleep(0.5)  # the interval between looks at gold; the run does the work
            returncode = process.wait()
            finished_at = time.time() - end_epoch
            if returncode != 0:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
                raise RuntimeError(f"the run failed (exit {process.returncode}); its log ends:\n{tail}")
            poster.join()
            watch.stop.set()

        record = instance.get_run_records(RunsFilter(job_name=hourly_lakehouse_job.name), limit=1)[0]
        five_past = hour.end + timedelta(minutes=5)
        backstop = hourly_schedule(build_schedule_context(instance=instance, scheduled_execution_time=five_past))

    first = reports[0]
    last_minute = (
        f"{first.accepted} of {first.sent} accepted at {first.accepted_per_s:.0f}/s, p99 {first.p99_ms:.0f} ms"
    )
    rows = [
        Row(
            f"traffic: the hour's last {args.last_seconds:.0f} s through the API", -args.last_seconds, None, last_minute
        ),
        Row("queue empty (sampled every second)", watch.first_empty, None, f"depth {watch.depth_at_end} at the end"),
        Row("sensor tick launches the hour", launched_at, None, str(request.tags.get("cart/launch_reason", ""))),
        Row("run process spawned", spawned - end_epoch),
        Row("run created (code loaded)", record.create_timestamp.timestamp() - end_epoch),
        *step_rows(instance, record.dagster_run.run_id, end_epoch),
        Row(
            f"gold/sales_hourly row for {hour.key} readable, all purchases",
            gold_at,
            None,
            f"{seen} purchases in gold, {expected} in DynamoDB for the hour",
        ),
        Row("run process exited", finished_at),
    ]
    if len(reports) > 1:
        rows.insert(1, Row("traffic into the next hour", 0.0, None, f"{reports[1].accepted} accepted"))
    skipped = isinstance(backstop, SkipReason)
    reason = backstop.skip_message or "" if isinstance(backstop, SkipReason) else "requested a run"
    run_time = finished_at - (spawned - end_epoch)
    goals = [
        (
            "an accepted purchase is in gold ≤ 2 min after its hour closes",
            gold_at is not None and gold_at <= GOAL_SECONDS,
            f"{gold_at:.1f} s" if gold_at is not None else f"gold incomplete: {seen} of {expected}",
        ),
        ("the HH:05 schedule does not run the hour again", skipped, reason),
    ]
    rows.append(Row("HH:05 schedule (backstop)", 300.0, None, reason))
    say(f"run took {run_time:.1f} s from spawn to exit")
    return rows, goals


def table(rows: list[Row]) -> str:
    lines = ["| event | at (s after the hour's end) | took (s) | note |", "|---|---:|---:|---|"]
    for r in rows:
        at = f"{r.at:+.1f}" if r.at is not None else "never"
        took = f"{r.took:.1f}" if r.took is not None else ""
        lines.append(f"| {r.event} | {at} | {took} | {r.note} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.freshness", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--hour-purchases", type=int, default=10_000, help="earlier purchases of the hour (%(default)s)"
    )
    parser.add_argument("--rate", type=float, default=20.0, help="purchases/s posted at the hour's end (%(default)s)")
    parser.add_argument(
        "--last-seconds", type=float, default=60.0, help="seconds of traffic before the end (%(default)s)"
    )
    parser.add_argument("--after-rate", type=float, default=0.0, help="purchases/s after the end (%(default)s)")
    parser.add_argument("--after-seconds", type=float, default=90.0, help="seconds of traffic after it (%(default)s)")
    parser.add_argument(
        "--tick-phase",
        type=float,
        default=INTERVAL_SECONDS - 0.1,
        help=f"seconds after the hour's end of the sensor's first tick, above 0 and below {INTERVAL_SECONDS} "
        "(%(default)s: the worst case, the tick before came just before the end)",
    )
    parser.add_argument(
        "--own-spark",
        dest="spark_warmup",
        action="store_const",
        const=None,
        default=20_000,
        help="the run starts its own Spark, instead of attaching to a warm Spark Connect server as under make run",
    )
    parser.add_argument("--write", type=Path, help="also write the table into this markdown file")
    args = parser.parse_args(argv)
    if not 0 < args.tick_phase < INTERVAL_SECONDS:
        parser.error(f"--tick-phase must be above 0 and below {INTERVAL_SECONDS} (the sensor's interval)")
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="cart-bench-freshness-") as workdir:
        rows, goals = run_bench(args, Path(workdir))
    verdicts = "\n".join(f"- {'met' if ok else 'NOT met'}: {name} ({value})" for name, ok, value in goals)
    text = (
        f"{table(rows)}\n\nGoals:\n{verdicts}\n\n"
        f"The hour held {args.hour_purchases} purchases before its last {args.last_seconds:.0f} s; the sensor's "
        f"first tick after the end at +{args.tick_phase:.1f} s (its interval is {INTERVAL_SECONDS} s); the run "
        f"launched as a new process (`dagster job execute`, production's resources), "
        + (
            "its Spark its own. "
            if args.spark_warmup is None
            else f"attached to a Spark Connect server warmed up on {args.spark_warmup} generated purchases "
            "(as make run starts one). "
        )
        + f"Benchmark took {time.perf_counter() - started:.0f} s on {machine()}; "
        f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after.\n"
    )
    print(text)
    if args.write:
        write_section(args.write, "freshness", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
