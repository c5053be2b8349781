"""Local ingest benchmark: does the local worker keep the queue short under steady API traffic?

Starts the local stack's pieces the way ``make run`` does (the patched moto server, provisioning,
the API under uvicorn in its own process, the worker as ``python -m cart_api.runner`` in its own
process), then sends purchases through the API at a fixed rate on a clock schedule (open loop:
2000 at 50/s by default) and samples every second, until every accepted purchase is stored:

* the purchases queue's depth (visible + in flight), the DLQ's depth,
* the purchases stored in DynamoDB (``DescribeTable``'s ``ItemCount``, which moto keeps exact;
  a Scan each second would cost moto more than the worker does),
* the worker lag: the age of the oldest accepted purchase not yet stored, from each 202's time
  (purchases are taken as stored in the order they were accepted, which SQS only approximates).

Each variant (the worker's polling threads, ``--threads``) runs on a freshly reset moto server
with its own API and worker processes, one after the other in the same run. The table shows per
variant the send duration, when the last purchase was stored after the last 202, the maximum
queue depth and worker lag, and the CPU seconds of moto, the API and the worker; the time series
is printed every ``--every`` seconds. Run: ``make bench-local-ingest`` or
``uv run python -m bench.local_ingest`` (``--write docs/benchmarks.md`` writes its section).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import threading
import time
from bisect import bisect_right
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.ingest import API_KEY, cpu_seconds, prepared_requests, read_status, settings_env, uvicorn_process
from bench.report import machine, say, write_section
from cart_api.settings import Settings
from cart_aws.aws import AwsClients
from cart_aws.provision import provision
from cart_dev.local_aws import MotoServer, stop_process_group

SECTION = "local ingest: API → queue → worker → DynamoDB at a steady rate"


@dataclass(frozen=True)
class Sample:
    at: float  # seconds since the first request was due
    accepted: int  # 202s answered by then
    queue: int  # visible + in flight
    dlq: int
    stored: int
    lag_s: float  # age of the oldest accepted purchase not yet stored


@dataclass
class Run:
    threads: int
    count: int
    rate: float
    accepted_at: list[float] = field(default_factory=list)  # seconds since start, sorted
    rejected: int = 0
    samples: list[Sample] = field(default_factory=list)
    send_s: float = 0.0
    stored_at: float | None = None  # when DynamoDB first held every accepted purchase
    cpu: dict[str, float | None] = field(default_factory=dict)

    @property
    def last_stored_after_last_accepted(self) -> float | None:
        if self.stored_at is None or not self.accepted_at:
            return None
        return max(0.0, self.stored_at - self.accepted_at[-1])

    @property
    def max_queue(self) -> int:
        return max((s.queue for s in self.samples), default=0)

    @property
    def max_lag(self) -> float:
        return max((s.lag_s for s in self.samples), default=0.0)


def backlog_age(accepted_at: list[float], at: float, stored: int) -> float:
    """Seconds since the oldest accepted purchase not yet stored was accepted (0: nothing waits),
    taking purchases as stored in the order they were accepted."""
    accepted = bisect_right(accepted_at, at)
    if stored >= accepted:
        return 0.0
    return at - accepted_at[stored]


async def send(url: str, count: int, rate: float, run: Run, on_start: Callable[[float], None]) -> None:
    """POST ``count`` purchases, request ``i`` due at ``start + i / rate`` whatever the answers
    before it took (open loop), on enough keep-alive connections that none waits for another.
    The clock starts once the connections are open (``on_start`` is told when)."""
    host, port, requests = prepared_requests(url, count, seed=11)
    connections = min(64, max(2, int(rate)))
    streams = await asyncio.gather(*(asyncio.open_connection(host, port) for _ in range(connections)))
    schedule = iter(enumerate(requests))
    start = time.perf_counter() + 0.1
    on_start(start)

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for i, request in schedule:
            if (wait := start + i / rate - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            writer.write(request)
            status = await read_status(reader)
            if status == 202:
                run.accepted_at.append(time.perf_counter() - start)
            else:
                run.rejected += 1

    try:
        await asyncio.gather(*(connection(r, w) for r, w in streams))
    finally:
        for _, writer in streams:
            writer.close()
    run.accepted_at.sort()
    run.send_s = time.perf_counter() - start


class Sampler:
    """Every ``interval`` seconds on the clock: queue and DLQ depth, stored count, worker lag."""

    def __init__(self, settings: Settings, run: Run, start: float, interval: float = 1.0) -> None:
        self.aws = AwsClients(settings)
        self.settings, self.run, self.start, self.interval = settings, run, start, interval
        self.queue_url = self.aws.queue_url(settings.purchases_queue)
        self.dlq_url = self.aws.queue_url(settings.purchases_dlq)
        self.baseline = 0  # purchases stored before the measured ones (the warm-up)

    def stored(self) -> int:
        return int(self.aws.dynamodb.describe_table(TableName=self.settings.purchases_table)["Table"]["ItemCount"])

    def depth(self, url: str) -> int:
        attrs = self.aws.sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def sample(self) -> Sample:
        at = time.perf_counter() - self.start
        accepted = list(self.run.accepted_at)  # appended by the sender meanwhile: a copy, sorted
        accepted.sort()
        stored = self.stored() - self.baseline
        queue, dlq = self.depth(self.queue_url), self.depth(self.dlq_url)
        return Sample(at, bisect_right(accepted, at), queue, dlq, stored, backlog_age(accepted, at, stored))

    def until_stored(self, sending: threading.Event, timeout: float) -> None:
        """Sample until sending is over and every accepted purchase is stored with the queue empty;
        a stall of ``timeout`` seconds without a stored purchase is an error. Once sending is over
        the samples come every 0.1 s, so the time the last purchase was stored is not rounded up to
        the next second."""
        next_at, last_progress, last_stored = 0.0, time.perf_counter(), -1
        while True:
            sample = self.sample()
            self.run.samples.append(sample)
            if sample.stored != last_stored:
                last_stored, last_progress = sample.stored, time.perf_counter()
            done = not sending.is_set() and sample.stored >= len(self.run.accepted_at)
            if done and self.run.stored_at is None:
                self.run.stored_at = sample.at
            if done and sample.queue == 0:
                return
            if time.perf_counter() - last_progress > timeout:
                raise TimeoutError(
                    f"{self.run.threads} threads: nothing stored for {timeout:.0f} s with {sample.queue} queued "
                    f"and {sample.stored} of {len(self.run.accepted_at)} stored"
                )
            next_at += self.interval if sending.is_set() else 0.1
            if (wait := self.start + next_at - time.perf_counter()) > 0:
                time.sleep(wait)  # the sampling clock, not a wait for a condition


def warm_up(url: str, sampler: Sampler, timeout: float) -> None:
    """One purchase through the API, waited for until stored: the API and the worker are both
    running (the worker process takes a second or two to start polling) before the clock starts."""
    warm = Run(0, 1, 1.0)
    asyncio.run(send(url, 1, 1.0, warm, lambda _: None))
    if len(warm.accepted_at) != 1:
        raise RuntimeError("the warm-up purchase was not accepted")
    deadline = time.monotonic() + timeout
    while sampler.stored() < 1:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the warm-up purchase was not stored within {timeout:.0f} s: is the worker running?")
        time.sleep(0.1)  # polling for the condition, with the deadline above
    sampler.baseline = sampler.stored()


@contextmanager
def worker_process(settings: Settings, threads: int) -> Iterator[int]:
    """``cart-worker`` in its own process group, as ``make run`` starts it; yields its pid."""
    process = subprocess.Popen(
        [sys.executable, "-m", "cart_api.runner", "--concurrency", str(threads), "--log-level", "WARNING"],
        env={**os.environ, **settings_env(settings)},
        start_new_session=True,
    )
    try:
        yield process.pid
    finally:
        stop_process_group(process)


def measure(moto: MotoServer, threads: int, count: int, rate: float, stall_timeout: float) -> Run:
    moto.reset()
    settings = Settings(aws_endpoint_url=moto.endpoint_url, api_keys={"bench": API_KEY})
    provision(settings)
    run = Run(threads, count, rate)
    assert moto.process is not None
    pids = {"moto": moto.process.pid}
    with (
        uvicorn_process("cart_api.app:create_app", settings_env(settings)) as (url, api_pid),
        worker_process(settings, threads) as worker_pid,
    ):
        pids |= {"API": api_pid, "worker": worker_pid}
        sampler = Sampler(settings, run, 0.0)
        warm_up(url, sampler, stall_timeout)
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        sending, started = threading.Event(), threading.Event()
        sending.set()

        def on_start(start: float) -> None:
            sampler.start = start  # the first request's due time
            started.set()

        def sender() -> None:
            try:
                asyncio.run(send(url, count, rate, run, on_start))
            finally:
                sending.clear()
                started.set()

        thread = threading.Thread(target=sender, name="sender")
        thread.start()
        try:
            if not started.wait(30) or not sampler.start:
                raise RuntimeError("the sender could not open its connections to the API")
            sampler.until_stored(sending, stall_timeout)
        finally:
            thread.join()
        for name, pid in pids.items():
            after, was = cpu_seconds(pid), before[name]
            run.cpu[name] = None if after is None or was is None else after - was
    stored = AwsClients(settings).item_count(settings.purchases_table) - 1  # the exact count, less the warm-up
    if stored != len(run.accepted_at):
        raise RuntimeError(f"{threads} threads: DynamoDB holds {stored} of {len(run.accepted_at)} accepted purchases")
    return run


def series(run: Run, every: float) -> str:
    """The time series, one row per ``every`` seconds and the last sample."""
    rows = ["| s | accepted | queue | DLQ | stored | worker lag s |", "|---:|---:|---:|---:|---:|---:|"]
    next_at = 0.0
    for i, s in enumerate(run.samples):
        if s.at + 1e-6 >= next_at or i == len(run.samples) - 1:
            rows.append(f"| {s.at:.0f} | {s.accepted} | {s.queue} | {s.dlq} | {s.stored} | {s.lag_s:.1f} |")
            next_at += every * (1 + int((s.at - next_at) // every))
    return "\n".join(rows)


def summary_table(runs: list[Run]) -> str:
    rows = [
        "| rate /s | worker threads | accepted | send s | accepted/s | last stored after last 202, s | max queue | "
        "max worker lag s | CPU s: moto / API / worker | max queue vs 1st of its rate |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in runs:
        base = next(b for b in runs if b.rate == r.rate)
        cpu = " / ".join("?" if r.cpu.get(k) is None else f"{r.cpu[k]:.1f}" for k in ("moto", "API", "worker"))
        after = r.last_stored_after_last_accepted
        ratio = f"{r.max_queue / base.max_queue:.2f}x" if base.max_queue > 0 else ""
        rows.append(
            f"| {r.rate:g} | {r.threads} | {len(r.accepted_at)} | {r.send_s:.1f} | "
            f"{len(r.accepted_at) / r.send_s:.1f} | "
            f"{'' if after is None else f'{after:.1f}'} | {r.max_queue} | {r.max_lag:.1f} | {cpu} | {ratio} |"
        )
    return "\n".join(rows)


def render(runs: list[Run], args: argparse.Namespace, elapsed: float, load: tuple[float, float]) -> str:
    parts = [summary_table(runs), ""]
    for r in runs:
        parts += [
            f"Queue over time, {r.rate:g}/s, {r.threads} worker thread{'s' if r.threads > 1 else ''}:",
            "",
            series(r, args.every),
            "",
        ]
    parts.append(
        f"{args.count} valid purchases per variant sent through the API on a fixed schedule at each rate; "
        "sampled every second (queue = visible + in flight; stored = DynamoDB's item count; worker lag = age of "
        "the oldest accepted purchase not yet stored; stored may lead accepted by a few: a purchase can be stored "
        "before its 202 reaches the client); each variant on a reset patched moto server with its own "
        f"API and worker processes. Benchmark took {elapsed:.0f} s on {machine()}; load average "
        f"{load[0]:.1f} at its start and {load[1]:.1f} at its end.\n"
    )
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench.local_ingest", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--count", type=int, default=2000, help="purchases per variant (default %(default)s)")
    parser.add_argument(
        "--rates",
        default="50,150",
        help="requests per second, open loop, one set of variants each (default %(default)s: the issue's rate "
        "and one the API sustains on the patched moto but a single polling thread does not)",
    )
    parser.add_argument(
        "--threads", default="1,2,4", help="the worker's polling threads, one variant each (default %(default)s)"
    )
    parser.add_argument("--every", type=float, default=5.0, help="seconds between printed rows (default %(default)s)")
    parser.add_argument(
        "--stall-timeout", type=float, default=60.0, help="give up after this long with nothing stored (default 60)"
    )
    parser.add_argument("--write", type=Path, help="also write the table into this markdown file")
    args = parser.parse_args(argv)
    try:
        threads = [int(t) for t in args.threads.split(",")]
        rates = [float(r) for r in args.rates.split(",")]
    except ValueError:
        parser.error(f"--threads and --rates take comma-separated numbers, not {args.threads!r} / {args.rates!r}")
    if args.count < 1 or min(rates) <= 0 or min(threads) < 1:
        parser.error("--count, --rates and --threads must be positive")

    started, load = time.perf_counter(), os.getloadavg()[0]
    runs = []
    with MotoServer() as moto:
        for rate in rates:
            for n in threads:
                say(f"{args.count} purchases at {rate:g}/s, worker with {n} polling thread(s)")
                r = measure(moto, n, args.count, rate, args.stall_timeout)
                runs.append(r)
                say(f"  max queue {r.max_queue}, max worker lag {r.max_lag:.1f} s")
    text = render(runs, args, time.perf_counter() - started, (load, os.getloadavg()[0]))
    print(f"## {SECTION}\n\n{text}")
    if args.write:
        write_section(args.write, SECTION, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
