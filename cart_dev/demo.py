"""``make demo``: the whole path, headless, with faults, reconciled to zero loss (``cart-demo``).

1. Starts a moto server with the fault proxy in front of it, provisions it, serves the API.
2. Sends traffic with a share of invalid requests (the API refuses them: 422, nothing accepted)
   while DynamoDB throttles every write (the proxy), so the worker retries those purchases and
   then dead-letters them; publishes a few contract-breaking messages straight to SNS (a broken
   producer); then DynamoDB recovers and more traffic flows normally.
3. Materializes the hour as the schedule would (bronze → silver → gold, every quality gate).
4. Lets the DLQ sensor work: it redrives the throttled purchases, quarantines the poison
   messages, and once the worker has stored the redriven purchases asks for a rerun of the hour,
   which is then run.
5. Prints the gold KPIs and the ledger (accepted = stored + quarantined, DynamoDB = bronze,
   bronze = silver + quarantined, gold = silver) and exits 0 only if everything reconciles.

The API's clock is set into the last closed hour, so that hour can be materialized right away
(an open hour is not a partition yet). Runs are real Dagster runs, in this process.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from dagster import RunRequest

from cart_api.app import create_app
from cart_api.runner import QueueRunner
from cart_api.settings import Settings
from cart_api.traffic import TrafficConfig, TrafficReport, run_traffic
from cart_aws.aws import AwsClients
from cart_aws.provision import provision
from cart_dev.harness import (
    POISON_PREFIX,
    hour_clock,
    poison_messages,
    run_sensor_until_done,
    settle,
    worker_running,
)
from cart_dev.local_api import ApiServer
from cart_dev.local_aws import MotoServer
from cart_dev.proxy import FaultProxy
from cart_lakehouse.checks.reconciliation import read_files
from cart_lakehouse.lake import Lake
from cart_lakehouse.layout import GOLD_TABLES
from cart_lakehouse.ledger import Entry, balanced, ledger, quarantined_dlq_records, render
from cart_lakehouse.local import local_resources, materialize_hours
from cart_lakehouse.partitions import Hour

API_KEY = "demo-key"


def step(message: str) -> None:
    print(f"==> {message}", flush=True)


def progress(message: str) -> None:
    print(f"    {message}", flush=True)


@dataclass
class DemoResult:
    hour: Hour
    accepted: list[str] = field(default_factory=list)
    reports: list[TrafficReport] = field(default_factory=list)
    poison: int = 0
    sensor_runs: list[RunRequest] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    gold_kpis: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return balanced(self.entries) and bool(self.sensor_runs)


@contextmanager
def local_aws(settings_changes: dict[str, Any], seed: int) -> Iterator[tuple[Settings, FaultProxy]]:
    """A moto server with the fault proxy in front, provisioned; yields the direct settings."""
    with MotoServer() as moto, FaultProxy(moto.endpoint_url, seed=seed) as proxy:
        settings = Settings(aws_endpoint_url=moto.endpoint_url, **settings_changes)
        provision(settings)
        yield settings, proxy


def run_demo(
    purchases: int,
    invalid_share: float,
    poison: int,
    lake_root: str,
    seed: int = 7,
    throttled_share: float = 0.5,
    rate: float | None = None,
) -> DemoResult:
    hour = Hour(datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1))
    # one retry of a throttled write before the message goes back to the queue, and a visibility
    # timeout a loaded machine's batch fits in: the retries and dead-letters show without the
    # throttled phase taking minutes at volume
    changes = {
        "api_keys": {"demo": API_KEY},
        "max_receive_count": 2,
        "visibility_timeout": 5,
        "worker_write_attempts": 2,
    }
    with local_aws(changes, seed) as (settings, proxy):
        via_proxy = settings.model_copy(update={"aws_endpoint_url": proxy.url})
        clients = AwsClients(settings)
        worker = QueueRunner(via_proxy, AwsClients(via_proxy, attempts=1), wait_seconds=1)
        result = DemoResult(hour)
        app = create_app(via_proxy, clock=hour_clock(hour, seed))
        throttled = round(purchases * throttled_share)
        show = sys.stderr.isatty()  # a progress bar on a terminal; a line per phase otherwise
        with ApiServer(app) as api:
            step(f"Traffic: {throttled} purchases into hour {hour.key} while DynamoDB throttles every write")
            step("Worker (polling meanwhile): retries each throttled purchase, then dead-letters it")
            proxy.throttle(only="dynamodb:BatchWriteItem")
            config = TrafficConfig(
                api.url, API_KEY, count=throttled, invalid_share=invalid_share, seed=seed, rate=rate, progress=show
            )
            with worker_running(worker):
                result.reports.append(asyncio.run(run_traffic(config)))
                step(f"A broken producer publishes {poison} contract-breaking messages straight to SNS")
                poison_messages(clients, settings, poison, hour)
                result.poison = poison
            settle(worker, clients, report=progress)
            proxy.clear()
            step(f"DynamoDB recovers: {purchases - throttled} more purchases flow normally")
            config = TrafficConfig(
                api.url,
                API_KEY,
                count=purchases - throttled,
                invalid_share=invalid_share,
                seed=seed + 1,
                rate=rate,
                progress=show,
            )
            with worker_running(worker):
                result.reports.append(asyncio.run(run_traffic(config)))
            settle(worker, clients, report=progress)
        for report in result.reports:
            print(f"    {report.summary()}", flush=True)
            result.accepted += report.accepted_ids
        print(f"    DLQ depth: {clients.queue_depth(settings.purchases_dlq)}", flush=True)

        resources = local_resources(settings, lake_root)
        step(f"Schedule: materializing {hour.key} (reference, bronze → silver → gold, every quality gate)")
        materialize_hours(resources, None, ("reference",))
        materialize_hours(resources, [hour])

        step("DLQ sensor: redrive the throttled purchases, quarantine the poison, rerun the hour once stored")
        result.sensor_runs = run_sensor_until_done(settings, worker, clients, lake_root, report=progress)
        # a large DLQ is triaged in batches, one rerun requested per hour and batch; the requests for
        # one hour are all satisfied by its last run (a rerun reads everything stored by then)
        last_request: dict[str, RunRequest] = {}
        for request in result.sensor_runs:
            key = request.partition_key or ""
            print(f"    run requested: {request.run_key} (partition {key})", flush=True)
            last_request[key] = request
        for key, request in last_request.items():
            asked = sum(r.partition_key == key for r in result.sensor_runs)
            print(f"    running {key} once for its {asked} request(s)", flush=True)
            materialize_hours(resources, [Hour.from_key(key)], tags=dict(request.tags))

        lake = Lake.open(lake_root)
        result.entries = ledger(settings, clients, lake, [hour], result.accepted)
        caught = sum(1 for r in quarantined_dlq_records(lake) if str(r.get("purchase_id")).startswith(POISON_PREFIX))
        poison_line = Entry(
            "all", "poison published = quarantined", f"{poison} published", f"{caught} quarantined", caught == poison
        )
        result.entries.insert(1, poison_line)
        result.gold_kpis = gold_kpis(lake, hour)
    return result


def gold_kpis(lake: Lake, hour: Hour) -> dict[str, Any]:
    table = read_files(lake, GOLD_TABLES["sales_hourly"].files([hour]))
    rows = table.to_pylist() if table is not None else []
    return rows[0] if rows else {}


def report(result: DemoResult) -> str:
    kpis = "\n".join(f"  {k:<22} {v}" for k, v in result.gold_kpis.items())
    verdict = "Everything reconciles: zero loss."
    if not result.ok:
        verdict = "NOT reconciled: see the MISMATCH lines"
        verdict += "" if result.sensor_runs else " (the DLQ sensor requested no rerun)"
    return f"\nGold sales_hourly for {result.hour.key}:\n{kpis}\n\nLedger:\n{render(result.entries)}\n\n{verdict}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cart-demo",
        description="Run the whole path headless with faults (throttled DynamoDB, invalid requests, poison "
        "messages), let the sensors redrive and rerun, and print the gold KPIs and the zero-loss ledger. "
        "Exits 0 only if everything reconciles.",
    )
    parser.add_argument("--purchases", type=int, default=300, help="requests sent to the API (default %(default)s)")
    parser.add_argument("--invalid-share", type=float, default=0.1, help="share of invalid requests (default 0.1)")
    parser.add_argument(
        "--throttled-share",
        type=float,
        default=0.5,
        help="share of the requests sent while DynamoDB throttles every write (default %(default)s)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=100.0,
        help="requests per second sent to the API (default %(default)s; 0: as fast as it answers). The local "
        "AWS slows down as its queue grows, so a steady rate the worker keeps up with is faster overall",
    )
    parser.add_argument("--poison", type=int, default=3, help="contract-breaking messages sent to SNS (default 3)")
    parser.add_argument("--lake-root", help="keep the lake here (default: a temporary folder)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the traffic (default %(default)s)")
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the moto server, proxy and API it started are stopped too
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    # the worker logs each retry and dead-letter; at volume that drowns the demo's own progress lines,
    # which count them, and the ledger, which accounts for every one
    logging.getLogger("cart_api").setLevel(logging.ERROR)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cart-demo-lake-") as tmp:
        result = run_demo(
            args.purchases,
            args.invalid_share,
            args.poison,
            args.lake_root or tmp,
            args.seed,
            args.throttled_share,
            args.rate or None,
        )
    print(report(result), flush=True)
    print(f"Demo took {time.perf_counter() - started:.0f} s.", file=sys.stderr)
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
