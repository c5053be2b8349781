"""``make run``: the whole system on this machine, on its embedded defaults (``cart-dev``).

Starts the local AWS (a moto server), provisions every resource, restores the last snapshot of the
local AWS (``cart_dev.snapshot``), starts the API, the worker and the dashboard as child processes
in their own process groups, seeds traffic so data is seen flowing, starts ``dagster dev`` (with a run queue)
and bootstraps the lakehouse (a few closed hours of purchases written to DynamoDB, into hours that
hold none, and materialized through Dagster's GraphQL API, so the asset graph is not empty), prints
where everything is, then supervises: a child that exits is restarted with backoff (up to a limit
a minute), snapshots are taken periodically, and on Ctrl-C (or SIGTERM), or if the local AWS
itself exits, everything is stopped after a final snapshot.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlparse

from botocore.exceptions import BotoCoreError, ClientError

from cart_api.settings import LOCAL_DEV_KEYS
from cart_api.settings import Settings as ApiSettings
from cart_aws.aws import AwsClients
from cart_aws.provision import format_changes, provision
from cart_aws.settings import AwsSettings
from cart_dashboard.settings import DashboardSettings
from cart_dev import snapshot, spark_server
from cart_dev.local_aws import MotoServer, answers, stop_process_group
from cart_lakehouse.settings import LakeSettings

RESTART_WINDOW_SECONDS = 60.0
MAX_BACKOFF_SECONDS = 30.0


def note(log: Path, message: str) -> None:
    """A supervisor line on the console and at the end of a child's log."""
    print(f"==> {message}", flush=True)
    try:
        with log.open("a") as out:
            out.write(f"[cart-dev {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC] {message}\n")
    except OSError:
        pass


@dataclass
class Child:
    """A supervised child process: how to start it again, and its recent restarts."""

    name: str
    args: list[str]
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes]
    restarts: deque[float] = field(default_factory=deque)
    restart_at: float | None = None
    gave_up: bool = False

    def start(self) -> None:
        with self.log.open("ab") as out:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                self.args, stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=True, cwd=os.getcwd()
            )

    def supervise(self, now: float, max_restarts: int) -> None:
        """Restart the child if it has exited: after a backoff (1, 2, 4 … s, up to 30 s) that grows
        with its restarts in the last minute; after ``max_restarts`` of them, give up on it."""
        if self.gave_up or self.process.poll() is None:
            return
        if self.restart_at is None:
            while self.restarts and now - self.restarts[0] > RESTART_WINDOW_SECONDS:
                self.restarts.popleft()
            code = self.process.returncode
            if len(self.restarts) >= max_restarts:
                self.gave_up = True
                note(
                    self.log,
                    f"{self.name} exited ({code}) after {len(self.restarts)} restarts within a minute; "
                    f"giving up on it (the rest keeps running). Last lines of {self.log}:\n{tail(self.log)}",
                )
                return
            delay = min(2.0 ** len(self.restarts), MAX_BACKOFF_SECONDS)
            self.restart_at = now + delay
            note(
                self.log,
                f"{self.name} exited ({code}); restarting it in {delay:.0f} s "
                f"(restart {len(self.restarts) + 1} of at most {max_restarts} a minute); see {self.log}",
            )
        if now >= self.restart_at:
            self.restarts.append(now)
            self.restart_at = None
            self.start()
            note(self.log, f"{self.name} restarted (pid {self.process.pid})")


@dataclass
class DevStack:
    state_dir: Path
    api_port: int
    aws_port: int
    children: list[Child] = field(default_factory=list)
    moto: MotoServer | None = None

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> Child:
        log = self.logs / f"{name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=os.getcwd()
            )
        child = Child(name, args, env, log, process)
        self.children.append(child)
        step(f"{name}: started (pid {process.pid})")
        return child

    def stop_children(self) -> None:
        for child in reversed(self.children):
            stop_process_group(child.process)

    def stop(self) -> None:
        self.stop_children()
        if self.moto:
            self.moto.stop()


class Snapshots:
    """Snapshots of the local AWS into ``path``: every ``interval`` seconds on a thread, and on
    demand (the final one); one at a time. Successes go to ``log``, failures also to the console."""

    def __init__(self, aws: AwsClients, targets: snapshot.Targets, path: Path, interval: float, log: Path) -> None:
        self.aws, self.targets, self.path, self.interval, self.log = aws, targets, path, interval, log
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_at: datetime | None = None
        self._failing = False

    def take(self, settle_seconds: float = 0.0, consumed: bool = True) -> snapshot.Summary:
        with self._lock:
            summary = snapshot.take(self.aws, self.targets, self.path, settle_seconds=settle_seconds, consumed=consumed)
            self.last_at = datetime.now(UTC)
            self._write_log(f"snapshot: {summary.describe()}")
            return summary

    def start(self) -> None:
        if self.interval > 0:
            self._thread = threading.Thread(target=self._loop, name="snapshots", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.take(consumed=False)  # the purchases queue: only in the final snapshot
                if self._failing:
                    print("==> Snapshots of the local AWS work again", flush=True)
                self._failing = False
            except snapshot.SnapshotError as exc:
                if not self._failing:  # once per run of failures, not every interval
                    print(f"warning: {exc}; the previous snapshot is kept", file=sys.stderr, flush=True)
                self._failing = True
                self._write_log(f"failed: {exc}")

    def _write_log(self, message: str) -> None:
        with self.log.open("a") as out:
            out.write(f"[{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC] {message}\n")


def step(message: str) -> None:
    print(f"==> {message}", flush=True)


class Backlog:
    """The purchases queue's and the DLQ's depth, for the banner and a status line while supervising.

    Quiet by design: ``check`` reads the depths at most every ``interval`` seconds and returns a line
    only when there is something to see: a backlog (``threshold`` or more purchases waiting,
    visible + in flight), with the worker's store rate since the last look and how far behind that
    puts it; the backlog cleared; or the DLQ's depth changed. Against the moto server DynamoDB's
    ``ItemCount`` is exact, so the store rate is cheap to read (a Scan would not be).
    """

    def __init__(self, aws: AwsClients, settings: AwsSettings, interval: float = 15.0, threshold: int = 100) -> None:
        self.aws, self.interval, self.threshold = aws, interval, threshold
        self.queue, self.dlq, self.table = settings.purchases_queue, settings.purchases_dlq, settings.purchases_table
        self.next_at: float | None = None
        self.backlogged = False
        self.dlq_depth: int | None = None
        self.last: tuple[float, int] | None = None  # (when, stored count) at the last look

    def depths(self) -> tuple[int, int]:
        return self.aws.queue_depth(self.queue), self.aws.queue_depth(self.dlq)

    def describe(self) -> str:
        """``cart-purchases: 0 waiting, DLQ cart-purchases-dlq: 0`` (or why it cannot be read)."""
        try:
            depth, dlq = self.depths()
        except (BotoCoreError, ClientError) as exc:
            return f"unknown ({exc})"
        return f"{self.queue}: {depth} waiting, DLQ {self.dlq}: {dlq}"

    def check(self, now: float) -> str | None:
        if self.next_at is not None and now < self.next_at:
            return None
        self.next_at = now + self.interval
        try:
            depth, dlq = self.depths()
            stored = int(self.aws.dynamodb.describe_table(TableName=self.table)["Table"]["ItemCount"])
        except (BotoCoreError, ClientError):
            return None  # the local AWS itself is supervised; its loss is reported there
        previous, self.last = self.last, (now, stored)
        lines = []
        if self.dlq_depth is not None and dlq != self.dlq_depth:
            change = dlq - self.dlq_depth
            lines.append(
                f"DLQ {self.dlq}: {dlq} message{'s' if dlq != 1 else ''} ({change:+d}); Dagster's dlq_redrive "
                "sensor triages them"
            )
        self.dlq_depth = dlq
        if depth >= self.threshold:
            self.backlogged = True
            behind = ""
            if previous is not None and now > previous[0]:
                rate = (stored - previous[1]) / (now - previous[0])
                behind = (
                    f"; the worker stores {rate:.0f}/s, ~{depth / rate:.0f} s behind"
                    if rate > 0
                    else f"; the worker stored nothing in {now - previous[0]:.0f} s (see its log, worker.log)"
                )
            lines.append(f"Backlog: {depth} purchases waiting in {self.queue} (visible + in flight){behind}")
        elif self.backlogged:
            self.backlogged = False
            lines.append(f"Backlog cleared: {depth} waiting in {self.queue}")
        return "\n==> ".join(lines) or None


def wait_until(check: object, timeout: float, what: str, child: Child | None = None, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        if child and child.process.poll() is not None:
            raise RuntimeError(f"{child.name} exited ({child.process.returncode}); see {child.log}:\n{tail(child.log)}")
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s" + (f"; see {child.log}" if child else ""))


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


LOCATIONS_QUERY = """
{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""


def code_location_loaded(dagster_url: str) -> bool:
    """True once every code location has loaded; a load error stops ``make run`` with its message."""
    request = urllib.request.Request(
        f"{dagster_url}/graphql",
        data=json.dumps({"query": LOCATIONS_QUERY}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            workspace = json.load(answer)["data"]["workspaceOrError"]
    except (OSError, ValueError, KeyError):
        return False
    entries = workspace.get("locationEntries") or []
    for entry in entries:
        loaded = entry.get("locationOrLoadError") or {}
        if loaded.get("__typename") == "PythonError":
            raise RuntimeError(f"Dagster could not load {entry['name']}: {loaded.get('message')}")
    return bool(entries) and all(e.get("loadStatus") == "LOADED" and e.get("locationOrLoadError") for e in entries)


# ---- lakehouse bootstrap: past hours in DynamoDB, materialized through Dagster's GraphQL API ----

PARTITION_FORMAT = "%Y-%m-%d-%H:%M"  # cart_lakehouse.partitions.PARTITION_FORMAT (that module imports dagster)
LAKEHOUSE_JOB = "hourly_lakehouse"  # cart_lakehouse.automation: bronze → silver → gold
IMPLICIT_ASSET_JOB = "__ASSET_JOB"  # Dagster's job of every asset: what the UI's "Materialize" launches
PRODUCTS = ["reference", "products"]  # unpartitioned; silver reads it, so it is materialized first
RUN_TAGS = {"cart/trigger": "cart-dev"}
RUN_POLL_SECONDS = 2.0


class DagsterApiError(RuntimeError):
    """Dagster's GraphQL API refused a request, or a run it launched failed; the message says why."""


def history_hours(now: datetime, count: int, partitions_start: str) -> tuple[list[datetime], str | None]:
    """The ``count`` closed hours before ``now``'s hour (UTC), oldest first, but none before the first
    hourly partition (``CART_PARTITIONS_START``), with a note saying so when that leaves fewer."""
    current = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    first = datetime.strptime(partitions_start, PARTITION_FORMAT).replace(tzinfo=UTC)
    if first.minute:
        return [], f"no history: CART_PARTITIONS_START={partitions_start} is not on the hour"
    wanted = [current - timedelta(hours=back) for back in range(count, 0, -1)]
    hours = [hour for hour in wanted if hour >= first]
    if len(hours) == len(wanted):
        return hours, None
    return hours, (
        f"{len(hours)} of the {count} hours asked for: the hourly partitions start at {partitions_start} "
        "(CART_PARTITIONS_START)"
    )


def span_of(hours: Sequence[datetime]) -> str:
    """``first..last`` partition keys of sorted hours (one key for one hour, empty for none)."""
    keys = [hour.strftime(PARTITION_FORMAT) for hour in hours]
    return keys[0] if len(keys) == 1 else f"{keys[0]}..{keys[-1]}" if keys else ""


def history_seed(seed: int, hour: datetime) -> int:
    """The seed of an hour's purchases: fixed by the hour itself (not by its position before now), so
    rerunning cart-dev against the same moto server, even hours later, rewrites the same purchases."""
    return seed * 1_000_000 + int(hour.timestamp()) // 3600


def graphql(dagster_url: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """POST a query to ``<dagster_url>/graphql`` and return its ``data``; DagsterApiError otherwise."""
    request = urllib.request.Request(
        f"{dagster_url}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            body = json.load(answer)
    except urllib.error.HTTPError as exc:  # a query the schema rejects: 400 with the reasons as JSON
        try:
            body = json.load(exc)
        except ValueError:
            raise DagsterApiError(f"{dagster_url}/graphql answered HTTP {exc.code} {exc.reason}") from exc
    except (OSError, ValueError) as exc:
        raise DagsterApiError(f"{dagster_url}/graphql did not answer: {exc}") from exc
    if not isinstance(body, dict):
        raise DagsterApiError(f"unexpected answer from {dagster_url}/graphql: {str(body)[:300]}")
    if body.get("errors"):
        messages = [str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in body["errors"]]
        raise DagsterApiError(f"{dagster_url}/graphql: {'; '.join(messages)}")
    data = body.get("data")
    if not isinstance(data, dict):
        raise DagsterApiError(f"unexpected answer from {dagster_url}/graphql: {str(body)[:300]}")
    return data


def describe(result: dict[str, Any] | None) -> str:
    """What a GraphQL result that is not the expected success says (PythonError, InvalidStepError, ...)."""
    if not isinstance(result, dict):
        return "no answer"
    details = [result.get("message")]
    if result.get("invalidStepKey"):
        details.append(f"invalid step {result['invalidStepKey']}")
    if result.get("invalidOutputName"):
        details.append(f"invalid output {result['invalidOutputName']} of step {result.get('stepKey')}")
    details += [e.get("message") for e in result.get("errors") or [] if isinstance(e, dict)]
    text = "; ".join(str(d) for d in details if d)
    kind = str(result.get("__typename", "unknown answer"))
    return f"{kind}: {text}" if text else kind


REPOSITORIES_QUERY = """
{ repositoriesOrError { __typename
  ... on RepositoryConnection { nodes { name location { name } jobs { name } } }
  ... on Error { message } } }
"""

LAUNCH_RUN_MUTATION = """
mutation LaunchRun($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) { __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on Error { message }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { stepKey invalidOutputName }
    ... on RunConfigValidationInvalid { errors { message } } } }
"""

RUN_STATUS_QUERY = """
query RunStatus($runId: ID!) {
  runOrError(runId: $runId) { __typename ... on Run { status } ... on Error { message } } }
"""

RUN_FAILURES_QUERY = """
query RunFailures($runId: ID!, $cursor: String) {
  logsForRun(runId: $runId, afterCursor: $cursor, limit: 1000) { __typename
    ... on EventConnection { cursor hasMore events { __typename
      ... on ExecutionStepFailureEvent { stepKey message error { message cause { message } } }
      ... on RunFailureEvent { message error { message cause { message } } }
      ... on EngineEvent { stepKey message error { message cause { message } } } } }
    ... on Error { message } } }
"""


def repository_selector(dagster_url: str, job: str) -> dict[str, str]:
    """The location and repository names of the code location that defines ``job``."""
    answer = graphql(dagster_url, REPOSITORIES_QUERY).get("repositoriesOrError")
    if not answer or answer.get("__typename") != "RepositoryConnection":
        raise DagsterApiError(f"listing Dagster's repositories: {describe(answer)}")
    for repository in answer.get("nodes") or []:
        if any(j.get("name") == job for j in repository.get("jobs") or []):
            return {"repositoryLocationName": repository["location"]["name"], "repositoryName": repository["name"]}
    raise DagsterApiError(f"no Dagster code location defines the job {job!r}")


def launch_run(dagster_url: str, selector: dict[str, Any], tags: dict[str, str], what: str) -> str:
    """``launchRun`` of ``selector`` (a job, optionally an asset selection of it) with ``tags``, its steps
    in one process; the run id."""
    params = {
        "selector": selector,
        "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
    }
    result = graphql(dagster_url, LAUNCH_RUN_MUTATION, {"executionParams": params}).get("launchRun")
    if not result or result.get("__typename") != "LaunchRunSuccess":
        raise DagsterApiError(f"Dagster did not launch {what}: {describe(result)}")
    return str(result["run"]["runId"])


def run_status(dagster_url: str, run_id: str) -> str:
    result = graphql(dagster_url, RUN_STATUS_QUERY, {"runId": run_id}).get("runOrError")
    if not result or result.get("__typename") != "Run":
        raise DagsterApiError(f"run {run_id}: {describe(result)}")
    return str(result["status"])


def run_failures(dagster_url: str, run_id: str) -> str:
    """Why a run failed: its failed steps (with their errors' causes) and the run failure, from its events."""
    reasons: list[str] = []
    cursor = None
    while True:
        result = graphql(dagster_url, RUN_FAILURES_QUERY, {"runId": run_id, "cursor": cursor}).get("logsForRun")
        if not result or result.get("__typename") != "EventConnection":
            return f"(its events could not be read: {describe(result)})"
        for event in result.get("events") or []:
            error = event.get("error") or {}
            if event.get("__typename") == "EngineEvent" and not error:
                continue
            if "message" not in event:  # another kind of event
                continue
            cause = (error.get("cause") or {}).get("message")
            text = " ".join(str(m).strip() for m in (error.get("message") or event["message"], cause) if m)
            reasons.append(f"{event['stepKey']}: {text}" if event.get("stepKey") else text)
        if not result.get("hasMore"):
            break
        cursor = result.get("cursor")
    return "\n  ".join(dict.fromkeys(reasons)) or "no failure event recorded"


def wait_for_run(dagster_url: str, run_id: str, what: str, timeout: float, dagster: Child) -> None:
    """Poll the run until it succeeds; DagsterApiError with its failure reasons if it fails."""
    url = f"{dagster_url}/runs/{run_id}"
    deadline = time.monotonic() + timeout
    while True:
        status = run_status(dagster_url, run_id)
        if status == "SUCCESS":
            return
        if status in ("FAILURE", "CANCELED"):
            raise DagsterApiError(f"{what} run {status.lower()} ({url}):\n  {run_failures(dagster_url, run_id)}")
        if dagster.process.poll() is not None:
            raise RuntimeError(f"dagster exited ({dagster.process.returncode}); see {dagster.log}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} run still {status} after {timeout:.0f} s: {url}")
        time.sleep(RUN_POLL_SECONDS)


def bootstrap_lakehouse(
    args: argparse.Namespace, aws: AwsClients, table: str, dagster_url: str, dagster: Child
) -> tuple[list[tuple[str, str]], Callable[[], None]]:
    """Write past, closed hours of purchases to DynamoDB (only into hours that hold none), then
    materialize reference/products and (in one run) the hours written, from bronze to gold. Returns
    (what, run URL) of the runs launched, and what waits for the hours' run (for ``--once``; it does
    nothing when no hours were written): only products is waited for here (silver reads them), so
    the caller can drop the file drop's sample set while the hours' run works. Hours that already
    held purchases are left to the schedule and the late-data sensor, so a restart neither changes
    nor recomputes them."""
    from botocore.exceptions import BotoCoreError, ClientError

    from cart_dev.seed import seed_empty_hours
    from cart_lakehouse.settings import LakeSettings

    lake = LakeSettings(aws_endpoint_url=f"http://127.0.0.1:{args.aws_port}")
    closed, note = history_hours(datetime.now(UTC), args.history_hours, lake.partitions_start)
    if note:
        step(f"Lakehouse: {note}")
    hours: list[datetime] = []
    if closed:
        try:
            written, kept = seed_empty_hours(
                aws,
                table,
                lake.ingest_hour_index,
                closed,
                args.history_per_hour,
                lambda hour: history_seed(args.seed, hour),
            )
        except (BotoCoreError, ClientError) as exc:
            raise RuntimeError(f"writing the history to DynamoDB table {table}: {exc}") from exc
        hours = sorted(written)
        if kept:
            step(
                f"Lakehouse: {len(kept)} closed hour{'s' if len(kept) > 1 else ''} {span_of(kept)} (UTC) already "
                f"hold purchases in DynamoDB table {table}: left as they are (nothing seeded into them)"
            )
        if hours:
            step(
                f"Lakehouse: wrote {sum(written.values())} purchases for {len(hours)} closed "
                f"hour{'s' if len(hours) > 1 else ''} {span_of(hours)} (UTC) to DynamoDB table {table} "
                "(only into hours that held none)"
            )
    keys = [hour.strftime(PARTITION_FORMAT) for hour in hours]
    span = span_of(hours)

    repository = repository_selector(dagster_url, LAKEHOUSE_JOB)
    runs: list[tuple[str, str]] = []
    products = launch_run(
        dagster_url,
        {**repository, "jobName": IMPLICIT_ASSET_JOB, "assetSelection": [{"path": PRODUCTS}]},
        RUN_TAGS,
        "reference/products",
    )
    runs.append(("reference/products", f"{dagster_url}/runs/{products}"))
    step(f"Lakehouse: materializing reference/products into {lake.lake_root} (silver reads it): {runs[-1][1]}")
    wait_for_run(dagster_url, products, "reference/products", args.lakehouse_timeout, dagster)
    if not hours:
        return runs, lambda: None

    window = (
        {"dagster/partition": keys[0]}
        if len(keys) == 1
        else {"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]}
    )
    what = f"{LAKEHOUSE_JOB} {span}"
    lakehouse = launch_run(dagster_url, {**repository, "jobName": LAKEHOUSE_JOB}, {**RUN_TAGS, **window}, what)
    runs.append((what, f"{dagster_url}/runs/{lakehouse}"))
    step(f"Lakehouse: materializing bronze → silver → gold for {span} in one run: {runs[-1][1]}")

    def finish() -> None:
        wait_for_run(dagster_url, lakehouse, what, args.lakehouse_timeout, dagster)
        step(f"Lakehouse: {what} succeeded; gold is under {lake.lake_root}/gold")

    return runs, finish


FILEDROP_JOB = "filedrop_job"
FILEDROP_RUNS_QUERY = """
query FiledropRuns($filter: RunsFilter) {
  runsOrError(filter: $filter, limit: 20) {
    __typename
    ... on Runs { results { runId status } }
    ... on PythonError { message }
  }
}
"""


def filedrop_run(dagster_url: str) -> tuple[str, str] | None:
    """The latest run of the file-drop job launched by the landing_files sensor: (run id, status)."""
    result = graphql(
        dagster_url,
        FILEDROP_RUNS_QUERY,
        {"filter": {"pipelineName": FILEDROP_JOB, "tags": [{"key": "dagster/sensor_name", "value": "landing_files"}]}},
    ).get("runsOrError")
    if not result or result.get("__typename") != "Runs":
        raise DagsterApiError(f"runs of {FILEDROP_JOB}: {describe(result)}")
    runs = result.get("results") or []
    return (str(runs[0]["runId"]), str(runs[0]["status"])) if runs else None


def bootstrap_filedrop(args: argparse.Namespace, aws: AwsClients, dagster_url: str) -> bool:
    """Drop one valid sample set of orders, order items and products into the lake bucket's landing/
    prefix, so a newcomer sees the file drop's KPI tables filled: S3's events reach the landing
    queue, the landing_files sensor forms the set and launches its run. Only on a lake that never
    had a drop (a restart drops nothing again); True if it dropped the set."""
    from cart_lakehouse.filedrop.layout import MANIFEST
    from cart_lakehouse.filedrop.sample import generate_set
    from cart_lakehouse.lake import Lake
    from cart_lakehouse.settings import LakeSettings

    lake_settings = LakeSettings(aws_endpoint_url=f"http://127.0.0.1:{args.aws_port}")
    lake = Lake.open(lake_settings.lake_root, lake_settings)
    if lake.exists(MANIFEST):
        step(f"File drop: the lake has seen drops before ({lake.uri(MANIFEST)}); nothing dropped")
        return False
    start = (datetime.now(UTC) - timedelta(days=3)).date()
    files = generate_set(seed=args.seed, orders=args.filedrop_orders, start=start, days=3, name="welcome")
    for key, data in files.items():
        aws.s3.put_object(Bucket=lake_settings.lake_bucket, Key=key, Body=data, ContentType="text/csv")
    step(
        f"File drop: put {len(files)} sample files ({args.filedrop_orders} orders over {start}..+2 days) under "
        f"s3://{lake_settings.lake_bucket}/landing/; the landing_files sensor forms the set and runs {FILEDROP_JOB}"
    )
    return True


def filedrop_runs_link(dagster_url: str) -> tuple[str, str]:
    return f"{FILEDROP_JOB} (file drop)", f"{dagster_url}/runs?q%5B0%5D=job%3A{FILEDROP_JOB}"


def wait_for_filedrop(
    args: argparse.Namespace, aws: AwsClients, dagster_url: str, dagster: Child
) -> list[tuple[str, str]]:
    """Wait for the landing_files sensor's run of the sample set (``--once``), then print the KPI
    tables' rows (Delta and DynamoDB)."""
    from cart_lakehouse.filedrop import kpis
    from cart_lakehouse.lake import Lake
    from cart_lakehouse.settings import LakeSettings

    lake_settings = LakeSettings(aws_endpoint_url=f"http://127.0.0.1:{args.aws_port}")
    lake = Lake.open(lake_settings.lake_root, lake_settings)
    started = time.monotonic()
    runs: list[tuple[str, str]] = []

    def launched() -> bool:
        runs.extend(filter(None, [filedrop_run(dagster_url)]))
        return bool(runs)

    wait_until(
        launched,
        args.lakehouse_timeout,
        f"a {FILEDROP_JOB} run from the landing_files sensor",
        dagster,
        interval=RUN_POLL_SECONDS,
    )
    found = runs[0]
    remaining = max(args.lakehouse_timeout - (time.monotonic() - started), 1.0)
    wait_for_run(dagster_url, found[0], FILEDROP_JOB, remaining, dagster)
    delta = {name: kpis.read_kpis(lake, name, aws=lake_settings).num_rows for name in ("category_kpis", "order_kpis")}
    items = {name: aws.item_count(name) for name in (lake_settings.category_kpis_table, lake_settings.order_kpis_table)}
    step(
        f"File drop: {FILEDROP_JOB} succeeded: Delta {lake.uri('kpis')}/ category_kpis {delta['category_kpis']} rows, "
        f"order_kpis {delta['order_kpis']} rows; DynamoDB "
        + ", ".join(f"{name} {count} items" for name, count in items.items())
    )
    return [(f"{FILEDROP_JOB} (file drop)", f"{dagster_url}/runs/{found[0]}")]


DAGSTER_YAML_MARK = "# Written by cart-dev (cart_dev/supervisor.py) on each start; edits are replaced."


def write_dagster_yaml(home: Path, max_concurrent_runs: int) -> str:
    """Give the local Dagster instance a run queue: at most ``max_concurrent_runs`` runs at once (the
    schedule, the sensors and the bootstrap all launch runs; on two cores, several Spark runs at once
    starve each other and the code server). A dagster.yaml that cart-dev did not write is left alone."""
    path = home / "dagster.yaml"
    if path.exists() and not path.read_text().startswith(DAGSTER_YAML_MARK):
        return f"keeping {path} (not written by cart-dev; --max-concurrent-runs does not apply)"
    from cart_lakehouse.filedrop.partitions import SERIAL_LIMIT

    path.write_text(
        f"{DAGSTER_YAML_MARK}\n"
        "# The QueuedRunCoordinator (dagster dev's default) starts queued runs up to this limit,\n"
        "# and file-drop runs one at a time (cart_lakehouse/filedrop/partitions.py says why).\n"
        f"run_queue:\n  max_concurrent_runs: {max_concurrent_runs}\n"
        f"  tag_concurrency_limits:\n    - key: {SERIAL_LIMIT['key']}\n      limit: {SERIAL_LIMIT['limit']}\n"
    )
    return f"at most {max_concurrent_runs} run{'s' if max_concurrent_runs > 1 else ''} at a time ({path})"


def start_fresh(state_dir: Path, lake_root: str) -> list[Path]:
    """Remove the state a start would pick up again: the local AWS's snapshot, Dagster's instance
    and the lake when it is a folder inside the state directory (never one elsewhere)."""
    removed = []
    lake = Path(lake_root).resolve()
    candidates = [state_dir / "aws", state_dir / "dagster"]
    if "://" not in lake_root and lake.is_relative_to(state_dir.resolve()):
        candidates.append(lake)
    for path in candidates:
        if path.exists():
            shutil.rmtree(path)
            removed.append(path)
    return removed


@dataclass
class SparkServer:
    """The Spark Connect server Dagster's runs attach to: started here (a supervised child) or
    found already serving on the port."""

    url: str
    port: int
    child: Child | None = None
    warming: threading.Thread | None = None

    def wait_serving(self) -> None:
        if self.child is not None:
            spark_server.wait_until_serving(self.port, self.child.process)

    def wait_ready(self, timeout: float = 300.0) -> None:
        """Serving and, if it warms up, warmed up: the runs then meet a warm JIT, and do not share
        two cores with the warm-up (it overlaps Dagster's start, so this seldom waits long)."""
        self.wait_serving()
        if self.warming is not None:
            self.warming.join(timeout)


def start_spark(stack: DevStack, args: argparse.Namespace, env: dict[str, str]) -> SparkServer:
    """Start the Spark Connect server (its JVM boots while the rest starts) and, once it serves,
    warm it up on a thread; or reuse the server already on the port."""
    url = spark_server.url_of(args.spark_port, spark_server.new_session_id())
    if spark_server.accepts(args.spark_port):
        step(f"Spark: reusing the Spark Connect server already on {url}")
        return SparkServer(url, args.spark_port)
    step(f"Spark: starting a Spark Connect server on {url} (Dagster's runs attach to it: CART_SPARK_REMOTE)")
    command = spark_server.server_command(LakeSettings(), args.spark_port, stack.state_dir / "spark")
    server = SparkServer(url, args.spark_port, stack.spawn("spark", command, spark_server.server_env(env)))
    if args.spark_warmup:
        server.warming = threading.Thread(
            target=warm_spark, args=(server, args.spark_warmup, args.spark_warmup_builds, stack.logs), daemon=True
        )
        server.warming.start()
    return server


def warm_spark(server: SparkServer, purchases: int, builds: int, logs: Path) -> None:
    """Wait for the server, then build silver on generated purchases (logged to spark.log)."""
    log = logs / "spark.log"
    try:
        server.wait_serving()
        seconds = spark_server.warm_up(server.url, purchases, builds=builds)
        note(log, f"warm-up: silver built from {purchases} generated purchases ({builds} builds) in {seconds:.1f} s")
    except Exception as exc:  # noqa: BLE001 - a convenience: the runs work on a cold server too
        note(log, f"warm-up failed (the server still serves, cold): {exc!r}")


def spark_env(spark: SparkServer | None) -> dict[str, str]:
    return {"CART_SPARK_REMOTE": spark.url} if spark else {}


def run(args: argparse.Namespace) -> int:
    stack = DevStack(Path(args.state_dir), args.api_port, args.aws_port)
    endpoint = f"http://127.0.0.1:{args.aws_port}"
    env = {**os.environ, "CART_AWS_ENDPOINT_URL": endpoint, "PYTHONUNBUFFERED": "1"}
    stopping = False
    snapshots: Snapshots | None = None

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    code = 0
    try:
        if args.fresh:
            from cart_lakehouse.settings import LakeSettings

            removed = start_fresh(stack.state_dir, LakeSettings().lake_root)
            step("Fresh start: " + (f"removed {', '.join(map(str, removed))}" if removed else "nothing to remove"))
        stack.logs.mkdir(parents=True, exist_ok=True)
        if answers(f"{endpoint}/moto-api/"):
            step(f"Local AWS: reusing the moto server already on {endpoint}")
        else:
            step(f"Local AWS: starting a moto server on {endpoint}")
            stack.moto = MotoServer(port=args.aws_port, log_path=stack.logs / "moto.log").start()
            assert stack.moto.process is not None
            step(f"moto: started (pid {stack.moto.process.pid})")

        settings = AwsSettings(aws_endpoint_url=endpoint)
        step("Provisioning SNS, SQS (+DLQ), DynamoDB and S3 (idempotent)")
        print(format_changes(provision(settings)), flush=True)

        aws = AwsClients(settings)
        snapshot_path = stack.state_dir / "aws" / snapshot.SNAPSHOT_FILE
        for leftover in snapshot_path.parent.glob(f".{snapshot.SNAPSHOT_FILE}.*.tmp"):
            leftover.unlink()  # a snapshot cut short by a crash: never read
        if not snapshot_path.exists():
            step(f"Local AWS: no snapshot in {snapshot_path.parent}; starting empty")
        elif stack.moto is None:
            step(f"Local AWS: not restoring {snapshot_path}: the server was already running, with its own state")
        else:
            restored = snapshot.restore(aws, snapshot_path)
            step(f"Local AWS: restored {snapshot_path}: {restored.describe()}")
        snapshots = Snapshots(
            aws, snapshot.Targets.of(settings), snapshot_path, args.snapshot_interval, stack.logs / "snapshots.log"
        )
        snapshots.start()

        spark = start_spark(stack, args, env) if args.dagster_port and args.spark_port else None

        step(f"API: starting uvicorn on http://127.0.0.1:{args.api_port}")
        api = stack.spawn(
            "api",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "cart_api.app:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(args.api_port),
                "--no-access-log",
            ],
            env,
        )
        api_url = f"http://127.0.0.1:{args.api_port}"
        wait_until(lambda: answers(f"{api_url}/ready"), 60, "API", api)

        step("Worker: starting the long-polling SQS worker")
        worker = stack.spawn("worker", [sys.executable, "-m", "cart_api.runner"], env)

        dashboard_url, dashboard = None, None
        if args.dashboard_port:  # started now, so it loads while the traffic and Dagster start
            dashboard_url = f"http://127.0.0.1:{args.dashboard_port}"
            step(f"Dashboard: starting on {dashboard_url}")
            dashboard_env = {**env}
            if args.dagster_port:  # its health strip asks this Dagster
                dashboard_env["CART_DAGSTER_UI_URL"] = f"http://127.0.0.1:{args.dagster_port}"
            dashboard = stack.spawn(
                "dashboard",
                [sys.executable, "-m", "cart_dashboard", "--host", "127.0.0.1", "--port", str(args.dashboard_port)],
                dashboard_env,
            )

        # the traffic's key: the first configured client's (CART_API_KEYS), kept in memory; the
        # console and the logs show it only when it is the public local development key
        api_keys = ApiSettings(aws_endpoint_url=endpoint).api_keys
        api_key = next(iter(api_keys.values())).get_secret_value()
        table = settings.purchases_table
        if args.traffic:
            from cart_api.traffic import TrafficConfig, run_traffic

            step(f"Traffic: sending {args.traffic} purchases ({args.invalid_share:.0%} deliberately invalid)")
            before = aws.item_count(table)
            report = asyncio.run(
                run_traffic(
                    TrafficConfig(
                        url=api_url,
                        count=args.traffic,
                        invalid_share=args.invalid_share,
                        seed=args.seed,
                        queue=settings,
                        wait_stored=60,
                        api_key=api_key,
                    )
                )
            )
            print(report.summary(), flush=True)
            wait_until(
                lambda: aws.item_count(table) - before >= report.accepted, 60, "worker storing purchases", worker
            )
            step(f"Stored: {aws.item_count(table)} purchases in DynamoDB table {table}")

        dagster_url = None
        runs: list[tuple[str, str]] = []
        if args.dagster_port:
            dagster_url = f"http://127.0.0.1:{args.dagster_port}"
            home = (stack.state_dir / "dagster").resolve()
            home.mkdir(parents=True, exist_ok=True)
            step(f"Dagster: run queue: {write_dagster_yaml(home, args.max_concurrent_runs)}")
            step(f"Dagster: starting dagster dev on {dagster_url} (DAGSTER_HOME={home})")
            dagster = stack.spawn(
                "dagster",
                [
                    sys.executable,
                    "-m",
                    "dagster",
                    "dev",
                    "-w",
                    "workspace.yaml",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(args.dagster_port),
                ],
                {**env, "DAGSTER_HOME": str(home), "CART_DAGSTER_UI_URL": dagster_url, **spark_env(spark)},
            )
            wait_until(lambda: answers(f"{dagster_url}/server_info"), 300, "Dagster UI", dagster)
            wait_until(lambda: code_location_loaded(dagster_url), 180, "Dagster definitions", dagster)
            if spark is not None:
                spark.wait_ready()
            if args.history_hours:
                try:
                    runs, finish_lakehouse = bootstrap_lakehouse(args, aws, table, dagster_url, dagster)
                    # dropped while the hours' run works: the sensor forms the set meanwhile and its
                    # run is queued to start as soon as that one ends (one run at a time)
                    dropped = bool(args.filedrop_orders) and bootstrap_filedrop(args, aws, dagster_url)
                    if args.once:
                        finish_lakehouse()
                        if dropped:
                            runs += wait_for_filedrop(args, aws, dagster_url, dagster)
                    elif dropped:
                        runs.append(filedrop_runs_link(dagster_url))
                except (RuntimeError, TimeoutError) as exc:
                    if args.once:
                        raise
                    # a convenience: the rest of the stack is still useful, so it keeps running
                    print(f"error: lakehouse bootstrap: {exc}", file=sys.stderr, flush=True)

        if dashboard_url:
            wait_until(lambda: answers(f"{dashboard_url}/healthz"), 60, "Dashboard", dashboard)
        backlog = Backlog(aws, settings)
        shown_key = api_key if api_key in LOCAL_DEV_KEYS.values() else None
        print_banner(
            api_url,
            endpoint,
            stack,
            dagster_url,
            runs,
            backlog.describe(),
            dashboard_url,
            shown_key,
            spark.url if spark else None,
        )
        if not args.once:
            code = supervise(stack, args.max_restarts, backlog=backlog)
    except KeyboardInterrupt:
        print("\nStopping...", flush=True)
    except (RuntimeError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 1
    finally:
        stopping = True
        if snapshots:
            snapshots.stop()
        stack.stop_children()
        if snapshots:
            final_snapshot(snapshots, stack, AwsSettings(aws_endpoint_url=endpoint).visibility_timeout)
        if stack.moto:
            stack.moto.stop()
        step("Stopped everything this command started.")
    return code


def supervise(
    stack: DevStack,
    max_restarts: int,
    poll: Callable[[], None] = lambda: time.sleep(0.5),
    backlog: Backlog | None = None,
) -> int:
    """Keep the children running until Ctrl-C; 1 when the local AWS (moto) exits, which ends it all.
    With ``backlog``, a status line when the purchases queue backs up or the DLQ changes."""
    while True:
        if stack.moto and stack.moto.process and stack.moto.process.poll() is not None:
            note(
                stack.logs / "moto.log",
                f"the local AWS (moto) exited ({stack.moto.process.returncode}); stopping everything. "
                f"Last lines of {stack.logs / 'moto.log'}:\n{tail(stack.logs / 'moto.log')}",
            )
            return 1
        now = time.monotonic()
        for child in stack.children:
            child.supervise(now, max_restarts)
        if backlog is not None and (line := backlog.check(now)):
            step(line)
        poll()


def final_snapshot(snapshots: Snapshots, stack: DevStack, visibility_timeout: int) -> None:
    """Snapshot once the consumers are stopped, waiting for messages they held to come back (at
    most the queues' visibility timeout); if that fails (the local AWS is gone), the last one stays."""
    moto_gone = bool(stack.moto and stack.moto.process and stack.moto.process.poll() is not None)
    settle = 0 if moto_gone else visibility_timeout + 5
    step(f"Snapshot of the local AWS into {snapshots.path} (waiting up to {settle} s for messages in flight)")
    try:
        summary = snapshots.take(settle_seconds=settle)
    except snapshot.SnapshotError as exc:
        kept = f"the one taken at {snapshots.last_at:%H:%M:%S} UTC" if snapshots.last_at else "the previous one, if any"
        print(f"error: no final snapshot: {exc}; {snapshots.path} keeps {kept}", file=sys.stderr, flush=True)
        return
    step(f"Snapshot: {summary.describe()}")


def print_banner(
    api_url: str,
    endpoint: str,
    stack: DevStack,
    dagster_url: str | None,
    runs: Sequence[tuple[str, str]] = (),
    queues: str | None = None,
    dashboard_url: str | None = None,
    api_key: str | None = LOCAL_DEV_KEYS["local"],
    spark_url: str | None = None,
) -> None:
    """Where everything is; ``api_key`` is shown in the examples only if it is public (the local
    development key), else a placeholder stands for a key of CART_API_KEYS."""
    host = urlparse(api_url).netloc
    key = api_key or "<a key of CART_API_KEYS>"
    traffic_command = "uv run cart-traffic --count 1000 --invalid-share 0.1"
    if api_key != LOCAL_DEV_KEYS["local"]:
        traffic_command += f" --api-key '{key}'"
    today = time.strftime("%Y-%m-%d", time.gmtime())
    example = (
        '{"buyer_id":"B000001","product_id":"P0001","number_of_installments":2,'
        f'"total_amount":59.9,"purchase_date":"{today}"}}'
    )
    dashboard_line = f"  Dashboard (sales)     {dashboard_url}/\n" if dashboard_url else ""
    dagster_line = f"  Dagster UI (assets)   {dagster_url}/asset-groups\n" if dagster_url else ""
    dagster_line += "".join(f"  Lakehouse run         {url}   ({what})\n" for what, url in runs)
    kpi_line = (
        "  File drop             put CSVs under s3://cart-lake/landing/{orders,order_items,products}/ "
        "(uv run cart-drop upload); KPIs in <lake>/kpis/ (Delta) and DynamoDB cart-category-kpis, cart-order-kpis\n"
    )
    queue_line = f"  Queue                 {queues}   (a status line follows if it backs up)\n" if queues else ""
    spark_line = f"  Spark (Connect)       {spark_url}   (silver's runs attach to it)\n" if spark_url else ""
    print(
        f"""
Cart lakehouse is running:
{dashboard_line}{dagster_line}  API (OpenAPI docs)    {api_url}/docs
  API readiness         {api_url}/ready
  Local AWS (moto)      {endpoint}   dashboard: {endpoint}/moto-api/
{spark_line}{queue_line}{kpi_line}  Logs                  {stack.logs}/{{api,worker,moto,dagster,spark,dashboard}}.log

Send a purchase:
  curl -s -X POST http://{host}/purchases -H 'X-API-Key: {key}' \\
       -H 'Content-Type: application/json' \\
       -d '{example}'
More traffic:  {traffic_command}   (its summary shows the queue and the worker lag)
Stop: Ctrl-C
""",
        flush=True,
    )


def non_negative(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {number}")
    return number


def positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {number}")
    return number


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cart-dev",
        description=(
            "Run the cart lakehouse locally: moto server (local AWS, restored from its last snapshot), provisioning, "
            "API, worker, dashboard, seed traffic, dagster dev, and a few past hours materialized from DynamoDB to "
            "gold; restarts a child that exits. Ctrl-C snapshots the local AWS and stops everything it started."
        ),
    )
    parser.add_argument("--api-port", type=int, default=8000, help="API port (default 8000)")
    parser.add_argument("--aws-port", type=int, default=4566, help="moto server port (default 4566)")
    parser.add_argument(
        "--dagster-port", type=int, default=3000, help="dagster dev UI port (default 3000; 0: do not start Dagster)"
    )
    parser.add_argument(
        "--dashboard-port",
        type=non_negative,
        default=DashboardSettings().dashboard_port,
        help="dashboard port (default CART_DASHBOARD_PORT, else 8050; 0: do not start the dashboard)",
    )
    parser.add_argument(
        "--spark-port",
        type=non_negative,
        default=spark_server.DEFAULT_PORT,
        help=(
            f"port of the Spark Connect server that Dagster's runs attach to (default {spark_server.DEFAULT_PORT}; "
            "0: no server, each run starts its own Spark); reused if one already serves there"
        ),
    )
    parser.add_argument(
        "--spark-warmup",
        type=non_negative,
        default=20_000,
        help=(
            "generated purchases the Spark server builds silver from once, in the background, so the first "
            "real hour meets a warm JIT (default 20000; 0: no warm-up)"
        ),
    )
    parser.add_argument(
        "--spark-warmup-builds",
        type=positive,
        default=3,
        help="times the warm-up builds silver from its purchases: the JIT keeps compiling over the first (default 3)",
    )
    parser.add_argument("--traffic", type=int, default=200, help="purchases to seed (0: none; default 200)")
    parser.add_argument("--invalid-share", type=float, default=0.05, help="share of invalid seed requests")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the seed traffic and the history hours")
    parser.add_argument("--state-dir", default=".local", help="where logs and local state go (default .local)")
    parser.add_argument(
        "--history-hours",
        type=non_negative,
        default=6,
        help=(
            "closed hours before the current one to write to DynamoDB and materialize, bronze to gold, once "
            "Dagster is up, so the asset graph shows data (default 6; 0: none; never before CART_PARTITIONS_START)"
        ),
    )
    parser.add_argument(
        "--history-per-hour", type=positive, default=200, help="purchases written per history hour (default 200)"
    )
    parser.add_argument(
        "--filedrop-orders",
        type=non_negative,
        default=2000,
        help=(
            "orders of the sample file set dropped into landing/ on a lake that never had a drop, so the file "
            "drop's KPI tables fill (default 2000; 0: drop nothing)"
        ),
    )
    parser.add_argument(
        "--lakehouse-timeout",
        type=float,
        default=300.0,
        help="seconds to wait for the products run (and, with --once, the lakehouse run) to finish (default 300)",
    )
    parser.add_argument(
        "--once", action="store_true", help="start, seed, check, wait for the lakehouse runs, then stop (smoke test)"
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help=(
            "start empty: remove the local AWS's snapshot, Dagster's instance and the lake (when it is inside "
            "--state-dir) before starting"
        ),
    )
    parser.add_argument(
        "--snapshot-interval",
        type=float,
        default=30.0,
        help=(
            "seconds between snapshots of the local AWS into <state-dir>/aws/ while running (default 30; "
            "0: only when stopping); the last one is restored on the next start"
        ),
    )
    parser.add_argument(
        "--max-restarts",
        type=positive,
        default=5,
        help="restarts of a child (API, worker, Dagster) within a minute before cart-dev gives up on it (default 5)",
    )
    parser.add_argument(
        "--max-concurrent-runs",
        type=positive,
        default=1,
        help="Dagster runs at a time; more wait in its run queue (default 1, for two cores)",
    )
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
