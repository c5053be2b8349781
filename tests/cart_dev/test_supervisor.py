"""``cart-dev``: the README's run command starts everything, seeds traffic, sees it stored,
bootstraps the lakehouse (past hours written to DynamoDB, materialized bronze → gold through
Dagster's GraphQL API) and the file drop, stops with a snapshot of the local AWS that the next start
restores, and supervises its children (a killed worker comes back; the loss of the local AWS stops
it all). The two long tests (with Dagster; restarts and supervision) are independent of each other,
so pytest-xdist runs them side by side."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance
from dagster._core.run_coordinator import QueuedRunCoordinator

from cart_api.runner import QueueRunner
from cart_api.settings import Settings
from cart_api.store import to_json
from cart_api.traffic import TrafficConfig, TrafficReport, run_traffic
from cart_aws.aws import AwsClients
from cart_dev import snapshot
from cart_dev.local_aws import answers, free_port
from cart_dev.seed import hour_holds_purchases, ingest_hour_key, put_purchases, seed_empty_hours, stored_purchases
from cart_dev.supervisor import Backlog, Child, history_hours, history_seed, start_fresh, write_dagster_yaml
from cart_lakehouse.layout import GOLD_TABLES, PRODUCTS_FILE, bronze_file
from cart_lakehouse.partitions import Hour
from tests.conftest import SHORT_LIVED_JVM

HISTORY_HOURS, PER_HOUR = 2, 20


def wait_for(check: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.2)


class Running:
    """``cart-dev`` (without --once) in its own process group, its console collected line by line."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cart_dev.supervisor", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def out(self) -> str:
        return "".join(self.lines)

    def wait_for_line(self, pattern: str, timeout: float = 120) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.out)
            if found:
                return found
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no line matching {pattern!r} (exit {self.process.poll()}):\n{self.out}")
            time.sleep(0.2)

    def pid_of(self, child: str) -> int:
        return int(re.findall(rf"==> {child}: started \(pid (\d+)\)", self.out)[-1])

    def interrupt(self, timeout: float = 120) -> int:
        """Ctrl-C as a terminal sends it: SIGINT to the process group."""
        os.killpg(self.process.pid, signal.SIGINT)
        code = self.process.wait(timeout)
        self._reader.join(10)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)


@pytest.fixture
def running() -> Iterator[Callable[[list[str], dict[str, str]], Running]]:
    started: list[Running] = []

    def start(args: list[str], env: dict[str, str]) -> Running:
        started.append(Running(args, env))
        return started[-1]

    yield start
    for stack in started:
        stack.kill()


def stored_ids(aws: AwsClients, table: str) -> set[str]:
    pages = aws.dynamodb.get_paginator("scan").paginate(TableName=table, ProjectionExpression="purchase_id")
    return {item["purchase_id"]["S"] for page in pages for item in page["Items"]}


def snapshot_ids(path: Path) -> set[str]:
    return {item["purchase_id"]["S"] for item in snapshot.read(path).items["cart-purchases"]}


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_run_command_brings_the_stack_up_bootstraps_the_lakehouse_and_the_file_drop_and_stops_with_a_snapshot(
    tmp_path: Path,
) -> None:
    api_port, aws_port, dagster_port, dashboard_port, spark_port = (free_port() for _ in range(5))
    lake = tmp_path / "lake"
    # the stack's Spark Connect server lives a minute: see SHORT_LIVED_JVM
    env = {**os.environ, "CART_LAKE_ROOT": str(lake), "CART_SPARK_JAVA_OPTIONS": SHORT_LIVED_JVM}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cart_dev.supervisor",
            "--once",
            "--traffic",
            "30",
            "--invalid-share",
            "0.2",
            "--api-port",
            str(api_port),
            "--aws-port",
            str(aws_port),
            "--dagster-port",
            str(dagster_port),
            "--dashboard-port",
            str(dashboard_port),
            "--spark-port",
            str(spark_port),
            "--spark-warmup",
            "50",  # a small one: the path, not the warmth (the runs then join the session it leaves)
            "--spark-warmup-builds",
            "1",
            "--state-dir",
            str(tmp_path),
            "--history-hours",
            str(HISTORY_HOURS),
            "--history-per-hour",
            str(PER_HOUR),
            "--filedrop-orders",
            "150",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "Stored:" in out
    assert f"http://127.0.0.1:{api_port}/docs" in out
    assert f"Dagster UI (assets)   http://127.0.0.1:{dagster_port}" in out
    assert f"Dashboard (sales)     http://127.0.0.1:{dashboard_port}/" in out  # printed once /healthz answered
    assert "rejected" in out  # the traffic summary
    assert (tmp_path / "logs" / "api.log").exists()

    # the lakehouse: two closed hours written to DynamoDB, then one run from bronze to gold for them
    written = re.search(rf"wrote {HISTORY_HOURS * PER_HOUR} purchases for 2 closed hours (\S+)\.\.(\S+) \(UTC\)", out)
    assert written, out
    first, last = Hour.from_key(written[1]), Hour.from_key(written[2])
    assert last.start - first.start == timedelta(hours=1)
    assert last.end <= datetime.now(UTC)  # closed hours
    assert f"http://127.0.0.1:{dagster_port}/runs/" in out
    assert f"succeeded; gold is under {lake}/gold" in out
    assert (lake / PRODUCTS_FILE).exists()
    hours = [first, last]
    for hour in hours:
        assert (lake / bronze_file(hour)).read_text().count("\n") == PER_HOUR
    for table in GOLD_TABLES.values():
        for relative in table.files(hours):
            assert (lake / relative).exists(), relative
    sales_hourly = [pq.read_table(lake / GOLD_TABLES["sales_hourly"].file(h)).to_pylist() for h in hours]
    assert [[row["purchases"] for row in rows] for rows in sales_hourly] == [[PER_HOUR], [PER_HOUR]]

    # the file drop: a sample set put under landing/, formed into a set and run by the sensor, fills
    # both KPI tables in Delta and in DynamoDB
    assert "File drop: put 3 sample files (150 orders" in out
    # put while the hours' run worked, so the set's run was queued to follow it at once
    assert out.index("File drop: put") < out.index("succeeded; gold is under")
    loaded = re.search(
        r"File drop: filedrop_job succeeded: .* category_kpis (\d+) rows, order_kpis (\d+) rows; "
        r"DynamoDB cart-category-kpis (\d+) items, cart-order-kpis (\d+) items",
        out,
    )
    assert loaded, out
    category_rows, order_rows, category_items, order_items = map(int, loaded.groups())
    assert order_rows == 3  # three days of orders
    assert category_rows > order_rows
    assert (category_items, order_items) == (category_rows, order_rows)
    assert (lake / "kpis" / "order_kpis" / "_delta_log").is_dir()

    # silver's Spark ran in the stack's Spark Connect server, not in a JVM of the run's own
    assert f"Spark (Connect)       sc://127.0.0.1:{spark_port}" in out
    spark_log = (tmp_path / "logs" / "spark.log").read_text()
    assert "ExecuteHolder ExecuteKey(" in spark_log  # executions it served
    assert "warm-up: silver built from 50 generated purchases" in spark_log  # before the hours' run started

    assert "Dagster: run queue: at most 1 run at a time" in out
    assert (tmp_path / "dagster" / "dagster.yaml").exists()

    # everything it started has stopped, after a snapshot of the local AWS
    assert not answers(f"http://127.0.0.1:{api_port}/health")
    assert not answers(f"http://127.0.0.1:{aws_port}/moto-api/")
    assert not answers(f"http://127.0.0.1:{dagster_port}/server_info")
    assert "==> Snapshot: " in out
    stored = int(re.findall(r"Stored: (\d+)", out)[-1])
    assert len(snapshot_ids(tmp_path / "aws" / snapshot.SNAPSHOT_FILE)) == HISTORY_HOURS * PER_HOUR + stored


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_run_command_keeps_its_data_across_restarts_and_supervises_its_children(
    tmp_path: Path, running: Callable[[list[str], dict[str, str]], Running]
) -> None:
    api_port, aws_port = free_port(), free_port()
    # two clients with generated keys (not the public development key): every log and every output
    # of the three starts is searched for them at the end
    keys = {"shop": secrets.token_urlsafe(24), "partner": secrets.token_urlsafe(24)}
    # a visibility timeout shorter than the default 30 s: the purchases the killed worker held come
    # back sooner, and so does the final snapshot's wait for messages in flight; the path is the same
    env = {
        **os.environ,
        "CART_LAKE_ROOT": str(tmp_path / "lake"),
        "CART_VISIBILITY_TIMEOUT": "10",
        "CART_API_KEYS": json.dumps(keys),
    }
    ports = [
        *("--api-port", str(api_port), "--aws-port", str(aws_port), "--state-dir", str(tmp_path)),
        *("--dagster-port", "0", "--dashboard-port", "0"),  # the test above covers Dagster and the dashboard
    ]
    # first start: traffic stored, then stopped with a snapshot
    done = subprocess.run(
        [sys.executable, "-m", "cart_dev.supervisor", "--once", "--traffic", "30", *ports],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    snapshot_file = tmp_path / "aws" / snapshot.SNAPSHOT_FILE
    first_run = snapshot_ids(snapshot_file)
    assert len(first_run) == int(re.findall(r"Stored: (\d+)", done.stdout)[-1]) > 0

    # second start: everything stored before is back, restored before the API and the worker start
    aws = AwsClients(Settings(aws_endpoint_url=f"http://127.0.0.1:{aws_port}"))
    second = running([*ports, "--traffic", "0", "--snapshot-interval", "1"], env)
    second.wait_for_line("Cart lakehouse is running")
    restored_at = second.out.index("Local AWS: restored")
    assert restored_at < second.out.index("API: starting") < second.out.index("Worker: starting")
    assert stored_ids(aws, "cart-purchases") == first_run

    # the worker SIGKILLed under traffic: cart-dev restarts it and every accepted purchase is stored
    report: list[TrafficReport] = []
    config = TrafficConfig(
        url=f"http://127.0.0.1:{api_port}", count=120, rate=40, seed=11, progress=False, api_key=keys["partner"]
    )
    traffic = threading.Thread(target=lambda: report.append(asyncio.run(run_traffic(config))))
    traffic.start()
    wait_for(lambda: len(stored_ids(aws, "cart-purchases")) > len(first_run), 30, "the worker storing traffic")
    os.kill(second.pid_of("worker"), signal.SIGKILL)
    second.wait_for_line(r"worker exited \(-9\); restarting it in 1 s \(restart 1 of at most 5 a minute\)")
    second.wait_for_line(r"worker restarted \(pid \d+\)")
    traffic.join(60)
    accepted = set(report[0].accepted_ids)
    assert len(accepted) == 120, report[0].summary()
    wait_for(lambda: accepted <= stored_ids(aws, "cart-purchases"), 90, "every accepted purchase stored")
    assert "restarted" in (tmp_path / "logs" / "worker.log").read_text()  # the line is in its log too
    assert second.process.poll() is None  # the rest kept running

    assert second.interrupt() == 0, second.out
    assert "==> Snapshot: " in second.out
    assert "NOT captured" not in second.out
    assert not answers(f"http://127.0.0.1:{aws_port}/moto-api/")

    # third start: the purchases of both runs are there, the current hour's through the index the
    # hourly run reads (so its next run puts them in gold)
    third = running([*ports, "--traffic", "0", "--snapshot-interval", "1"], env)
    third.wait_for_line("Cart lakehouse is running")
    assert stored_ids(aws, "cart-purchases") == first_run | accepted
    hours = {
        aws.dynamodb.get_item(TableName="cart-purchases", Key={"purchase_id": {"S": pid}})["Item"]["ingest_hour"]["S"]
        for pid in accepted
    }
    for hour in hours:
        assert hour_holds_purchases(
            aws, "cart-purchases", "by-ingest-hour", datetime.strptime(hour, "%Y-%m-%dT%H").replace(tzinfo=UTC)
        )

    # the local AWS is the one child whose loss stops everything (after a final snapshot attempt;
    # the last periodic one stays, whole)
    os.kill(third.pid_of("moto"), signal.SIGKILL)
    assert third.process.wait(120) == 1
    third._reader.join(10)
    assert "the local AWS (moto) exited (-9); stopping everything" in third.out
    assert "error: no final snapshot" in third.out
    assert not answers(f"http://127.0.0.1:{api_port}/health")
    assert snapshot_ids(snapshot_file) == first_run | accepted

    # no API key in any log (API, worker, moto, snapshots, the supervisor's notes) or on the console
    # of any of the three starts, though both clients' keys were used (the first start's traffic
    # sent the first key, this test's the second)
    logs = sorted(path for path in (tmp_path / "logs").rglob("*") if path.is_file())
    assert {"api.log", "worker.log", "moto.log"} <= {path.name for path in logs}
    outputs = {"first start": done.stdout + done.stderr, "second start": second.out, "third start": third.out}
    outputs |= {str(path): path.read_text(errors="replace") for path in logs}
    assert "<a key of CART_API_KEYS>" in done.stdout  # the banner's example shows no key either
    for name, key in keys.items():
        assert not [where for where, text in outputs.items() if key in text], f"{name}'s API key was logged"


def test_history_is_the_closed_hours_before_now_inside_the_hourly_partitions() -> None:
    now = datetime(2026, 11, 25, 13, 30, tzinfo=UTC)
    assert history_hours(now, 3, "2026-11-18-00:00") == (
        [datetime(2026, 11, 25, h, tzinfo=UTC) for h in (10, 11, 12)],
        None,
    )
    clamped, note = history_hours(now, 6, "2026-11-25-11:00")
    assert [h.hour for h in clamped] == [11, 12]
    assert note == "2 of the 6 hours asked for: the hourly partitions start at 2026-11-25-11:00 (CART_PARTITIONS_START)"
    assert history_hours(now, 2, "2026-11-25-13:00")[0] == []
    # an hour's seed is the hour's own, not its distance from now: rerun later, the same purchases are rewritten
    hour = datetime(2026, 11, 25, 12, tzinfo=UTC)
    assert history_seed(7, hour) == history_seed(7, hour.astimezone(UTC)) != history_seed(7, hour + timedelta(hours=1))


def test_a_child_that_exits_is_restarted_with_backoff_until_the_limit_a_minute(tmp_path: Path) -> None:
    log = tmp_path / "flaky.log"
    args = [sys.executable, "-c", "raise SystemExit(3)"]
    child = Child("flaky", args, dict(os.environ), log, subprocess.Popen(args))
    child.process.wait()
    now = 1000.0  # the supervisor's clock, driven by hand: no sleeping

    child.supervise(now, max_restarts=2)
    assert child.restart_at == now + 1
    assert child.process.poll() == 3
    child.supervise(now + 0.5, max_restarts=2)  # still backing off
    assert child.restart_at == now + 1
    child.supervise(now + 1, max_restarts=2)
    assert child.restart_at is None
    child.process.wait()
    child.supervise(now + 2, max_restarts=2)
    assert child.restart_at == now + 4  # the second restart waits longer
    child.supervise(now + 4, max_restarts=2)
    child.process.wait()
    child.supervise(now + 5, max_restarts=2)
    assert child.gave_up
    text = log.read_text()
    assert "flaky exited (3); restarting it in 1 s (restart 1 of at most 2 a minute)" in text
    assert "flaky exited (3); restarting it in 2 s (restart 2 of at most 2 a minute)" in text
    assert "flaky exited (3) after 2 restarts within a minute; giving up on it (the rest keeps running)" in text

    # restarts older than a minute no longer count
    again = Child("flaky", args, dict(os.environ), log, subprocess.Popen(args))
    again.restarts.extend([now, now + 1])
    again.process.wait()
    again.supervise(now + 120, max_restarts=2)
    assert not again.gave_up
    assert again.restart_at == now + 121


def test_history_is_seeded_only_into_hours_that_hold_no_purchases(aws: AwsClients, settings: Settings) -> None:
    real, empty = datetime(2026, 11, 25, 9, tzinfo=UTC), datetime(2026, 11, 25, 10, tzinfo=UTC)
    put_purchases(aws, settings.purchases_table, stored_purchases(real, 3, seed=99))  # came in through the API
    before = stored_ids(aws, settings.purchases_table)
    table, index = settings.purchases_table, settings.ingest_hour_index

    written, kept = seed_empty_hours(aws, table, index, [real, empty], 5, lambda hour: history_seed(7, hour))

    assert written == {empty: 5}
    assert kept == [real]
    after = stored_ids(aws, table)
    assert before < after
    assert len(after) == 8

    # a second start writes nothing, so nothing DynamoDB holds (and hence nothing gold holds) changes
    assert seed_empty_hours(aws, table, index, [real, empty], 5, lambda hour: history_seed(7, hour)) == (
        {},
        [real, empty],
    )
    assert stored_ids(aws, table) == after
    assert ingest_hour_key(empty) == "2026-11-25T10"


def test_the_dagster_instance_gets_a_run_queue_of_one_run(tmp_path: Path) -> None:
    assert "at most 1 run at a time" in write_dagster_yaml(tmp_path, 1)
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        coordinator = instance.run_coordinator
        assert isinstance(coordinator, QueuedRunCoordinator)
        assert coordinator.get_run_queue_config().max_concurrent_runs == 1
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        # file-drop runs one at a time, whatever the limit: their KPI steps must not interleave
        limits = instance.run_coordinator.get_run_queue_config().tag_concurrency_limits  # type: ignore[attr-defined]
        assert [{"key": limit["key"], "limit": limit["limit"]} for limit in limits] == [
            {"key": "cart/filedrop_serial", "limit": 1}
        ]
    from cart_lakehouse.filedrop.assets import filedrop_job

    assert filedrop_job.tags == {"cart/filedrop_serial": "true"}
    write_dagster_yaml(tmp_path, 3)  # its own file is rewritten with the new limit
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        assert instance.run_coordinator.get_run_queue_config().max_concurrent_runs == 3  # type: ignore[attr-defined]
    (tmp_path / "dagster.yaml").write_text("run_queue:\n  max_concurrent_runs: 4\n")  # someone's own
    assert "keeping" in write_dagster_yaml(tmp_path, 1)
    assert "max_concurrent_runs: 4" in (tmp_path / "dagster.yaml").read_text()


def test_fresh_removes_the_snapshot_dagster_and_a_lake_inside_the_state_dir_only(tmp_path: Path) -> None:
    state, outside = tmp_path / "state", tmp_path / "elsewhere-lake"
    for folder in (state / "aws", state / "dagster", state / "lake", state / "logs", outside):
        folder.mkdir(parents=True)
    assert set(start_fresh(state, str(state / "lake"))) == {
        state / "aws",
        state / "dagster",
        (state / "lake").resolve(),
    }
    assert (state / "logs").exists()
    (state / "aws").mkdir()
    assert start_fresh(state, str(outside)) == [state / "aws"]
    assert outside.exists()


def test_the_backlog_line_appears_when_the_queue_backs_up_and_when_it_clears(
    settings: Settings, aws: AwsClients
) -> None:
    backlog = Backlog(aws, settings, interval=10, threshold=5)
    assert backlog.describe() == "cart-purchases: 0 waiting, DLQ cart-purchases-dlq: 0"
    assert backlog.check(now=0) is None  # nothing queued: nothing to say

    publish(aws, settings, [to_json(p) for p in stored_purchases(datetime.now(UTC), 8, seed=1)])
    assert backlog.check(now=5) is None  # not yet time for another look
    line = backlog.check(now=10)
    assert line is not None
    assert line.startswith("Backlog: 8 purchases waiting in cart-purchases (visible + in flight)")
    assert "the worker stored nothing in 10 s" in line  # no worker is running

    QueueRunner(settings, aws, wait_seconds=0).drain()
    assert backlog.check(now=20) == "Backlog cleared: 0 waiting in cart-purchases"
    assert backlog.check(now=30) is None  # said once

    aws.sqs.send_message(QueueUrl=aws.queue_url(settings.purchases_dlq), MessageBody="{broken")
    line = backlog.check(now=40)
    assert line is not None
    assert line.startswith("DLQ cart-purchases-dlq: 1 message (+1)")
    assert backlog.describe() == "cart-purchases: 0 waiting, DLQ cart-purchases-dlq: 1"


def test_the_backlog_line_gives_the_worker_s_store_rate_and_how_far_behind_it_is(
    settings: Settings, aws: AwsClients
) -> None:
    backlog = Backlog(aws, settings, interval=10, threshold=5)
    bodies = [to_json(p) for p in stored_purchases(datetime.now(UTC), 30, seed=2)]
    publish(aws, settings, bodies[:10])
    assert backlog.check(now=0) == "Backlog: 10 purchases waiting in cart-purchases (visible + in flight)"
    QueueRunner(settings, aws, wait_seconds=0).drain()  # 10 stored between the two looks, 10 s apart
    publish(aws, settings, bodies[10:])
    assert backlog.check(now=10) == (
        "Backlog: 20 purchases waiting in cart-purchases (visible + in flight); the worker stores 1/s, ~20 s behind"
    )


def test_a_backlog_that_cannot_be_read_says_why_in_the_banner_and_nothing_while_supervising() -> None:
    unreachable = Settings(aws_endpoint_url="http://127.0.0.1:9")
    backlog = Backlog(AwsClients(unreachable, attempts=1), unreachable)
    assert backlog.describe().startswith("unknown (")
    assert backlog.check(now=0) is None


def publish(aws: AwsClients, settings: Settings, bodies: list[str]) -> None:
    arn = aws.topic_arn(settings.purchases_topic)
    for start in range(0, len(bodies), 10):
        entries = [{"Id": str(i), "Message": b} for i, b in enumerate(bodies[start : start + 10])]
        aws.sns.publish_batch(TopicArn=arn, PublishBatchRequestEntries=entries)  # type: ignore[arg-type]
