"""Ingest benchmark: every comparison side by side in one run, printed as a table.

(a) The API's accepted purchases/s and latency against the moto server, next to the emulator's
    own raw publish rate (concurrent ``Publish`` calls) measured in the same run: the API should
    reach at least 80 % of it, so the API is never the bottleneck.
(b) Batched publishing (``PublishBatch`` of up to 10) against one ``Publish`` per request, with
    the fault proxy adding a round trip (20 ms by default) to every AWS call, as on AWS.
    moto delivers SNS→SQS synchronously inside the publish call (roughly 100–200 messages/s
    here), which would cap both variants at the emulator's delivery rate; this phase therefore
    publishes to a topic with no subscription, so what is measured is the publishing itself.
(c) The worker's stored messages/s, receiving 10 at a time against 1 at a time, directly on
    the moto server and through the proxy.

The API runs under uvicorn in its own process, as in production, and the load comes from a bare
asyncio HTTP client (``blast``) that costs far less CPU than the API it measures. Each phase
starts from an empty queue (moto's SQS walks every message on each call, so a
growing queue would slow later phases). Run: ``make bench`` or ``uv run python -m bench.ingest``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

from bench.report import machine, say, write_section
from cart_api.runner import QueueRunner
from cart_api.settings import Settings
from cart_api.traffic import TrafficReport, generate_requests
from cart_aws.aws import AwsClients
from cart_aws.provision import provision
from cart_dev.local_aws import MotoServer, answers, free_port, stop_process_group
from cart_dev.proxy import FaultProxy
from cart_dev.seed import stored_purchases

API_KEY = "bench-key"
QUIET = ("--no-access-log", "--log-level", "warning")


@dataclass
class Row:
    phase: str
    variant: str
    count: int
    seconds: float
    per_second: float
    p50_ms: float | None = None
    p99_ms: float | None = None
    calls: int | None = None
    note: str = ""
    ratio: str = ""


@dataclass
class Bench:
    moto: MotoServer
    count: int
    concurrency: int
    delay_ms: float
    rows: list[Row] = field(default_factory=list)

    def settings(self, endpoint: str | None = None, **changes: object) -> Settings:
        return Settings(
            aws_endpoint_url=endpoint or self.moto.endpoint_url,
            api_keys={"bench": API_KEY},
            rate_limit_per_second=0,  # the per-key limit would cap what is being measured
            **changes,  # type: ignore[arg-type]
        )

    def fresh(self) -> Settings:
        """A reset, provisioned moto server: empty queues and table for the next phase."""
        self.moto.reset()
        settings = self.settings()
        provision(settings)
        return settings


def raw_publish_rate(settings: Settings, count: int, concurrency: int) -> Row:
    """The emulator's own rate: concurrent Publish calls, nothing else in the way."""
    aws = AwsClients(settings, max_pool_connections=concurrency)
    arn = aws.topic_arn(settings.purchases_topic)
    body = '{"buyer_id":"B000001","product_id":"P0001"}'
    aws.sns.publish(TopicArn=arn, Message=body)  # warm the client
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda _: aws.sns.publish(TopicArn=arn, Message=body), range(count)))
    elapsed = time.perf_counter() - start
    return Row("a", "moto raw Publish", count, elapsed, count / elapsed, calls=count, note=f"{concurrency} threads")


async def blast(url: str, count: int, concurrency: int, seed: int) -> TrafficReport:
    """POST ``count`` seeded purchases over ``concurrency`` keep-alive connections.

    A bare asyncio HTTP/1.1 client with every request prepared beforehand: the benchmark's load
    generator must cost far less CPU than what it measures. ``cart-traffic`` (httpx) spends
    about 7 ms of CPU per request, which on two cores would cap the API at the client's rate.
    """
    host, port = urlparse(url).hostname or "127.0.0.1", urlparse(url).port or 80
    requests = [
        (
            f"POST /purchases HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"X-API-Key: {API_KEY}\r\nContent-Length: {len(p.body)}\r\n\r\n"
        ).encode()
        + p.body
        for p in generate_requests(seed, count)
    ]
    report = TrafficReport()
    queue = iter(requests)

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for request in queue:
                sent = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                report.latencies_ms.append((time.perf_counter() - sent) * 1000)
                report.sent += 1
                if status == 202:
                    report.accepted += 1
                else:
                    report.rejected[str(status)] += 1
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    report.elapsed_s = time.perf_counter() - start
    return report


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as the CART_* environment variables a separate process reads them from."""
    env = {}
    for name, value in settings.model_dump().items():
        if value is not None:
            env[f"CART_{name.upper()}"] = json.dumps(value) if isinstance(value, dict | list) else str(value)
    return env


@contextmanager
def api_process(settings: Settings) -> Iterator[str]:
    """The API under uvicorn in its own process, as in production: its CPU is not the load
    generator's (one process would share one GIL between them)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "cart_api.app:create_app", "--factory", "--port", str(port), *QUIET],
        env={**os.environ, **settings_env(settings)},
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not answers(f"{url}/health"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the API process did not start on {url}")
            time.sleep(0.1)
        yield url
    finally:
        stop_process_group(process)


def sns_calls(proxy: FaultProxy | None) -> int | None:
    if proxy is None:
        return None
    return proxy.stats.forwarded["sns:Publish"] + proxy.stats.forwarded["sns:PublishBatch"]


def api_traffic(
    settings: Settings, count: int, concurrency: int, proxy: FaultProxy | None = None
) -> tuple[TrafficReport, int | None]:
    """Traffic through the real API in its own process; the report and the SNS calls it made
    (counted by the proxy, when there is one)."""
    with api_process(settings) as url:
        asyncio.run(blast(url, 20, 4, seed=1))  # warm up
        before = sns_calls(proxy)
        report = asyncio.run(blast(url, count, concurrency, seed=2))
        after = sns_calls(proxy)
    if report.accepted != count:
        raise RuntimeError(f"the API accepted {report.accepted} of {count}: {dict(report.rejected)}")
    return report, None if before is None or after is None else after - before


def traffic_row(phase: str, variant: str, report: TrafficReport, calls: int | None, note: str = "") -> Row:
    return Row(
        phase,
        variant,
        report.accepted,
        report.elapsed_s,
        report.accepted_per_s,
        report.p50_ms,
        report.p99_ms,
        calls,
        note,
    )


def fill_queue(settings: Settings, count: int) -> None:
    """Put ``count`` valid purchase messages on the purchases queue (SendMessageBatch)."""
    from cart_api.store import to_json

    aws = AwsClients(settings)
    url = aws.queue_url(settings.purchases_queue)
    purchases = stored_purchases(datetime.now(UTC).replace(minute=0, second=0, microsecond=0), count, seed=3)
    bodies = [to_json(p) for p in purchases]
    chunks = [bodies[i : i + 10] for i in range(0, len(bodies), 10)]

    def send(chunk: list[str]) -> None:
        aws.sqs.send_message_batch(
            QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(chunk)]
        )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(send, chunks))


def worker_rate(settings: Settings, count: int, batch_size: int, threads: int) -> Row:
    """Drain ``count`` queued purchases with ``threads`` pollers receiving ``batch_size`` at a time."""
    runner = QueueRunner(
        settings, AwsClients(settings, max_pool_connections=threads * 4), batch_size=batch_size, wait_seconds=0
    )
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda _: runner.drain(idle_polls=2), range(threads)))
    elapsed = time.perf_counter() - start
    items = runner.clients.item_count(settings.purchases_table)
    if items != count:
        raise RuntimeError(f"DynamoDB holds {items} of the {count} queued purchases")
    note = f"{threads} pollers"
    if runner.stats.stored > count:  # moto sometimes hands one message to two concurrent receivers
        note += f"; {runner.stats.stored - count} redelivered, stored idempotently"
    return Row("c", f"worker, receive {batch_size}", count, elapsed, count / elapsed, note=note)


def ratio(rows: list[Row], numerator: str, denominator: str) -> float:
    by_variant = {r.variant: r for r in rows}
    return by_variant[numerator].per_second / by_variant[denominator].per_second


def run(bench: Bench) -> list[Row]:
    rows: list[Row] = []
    n, c = bench.count, bench.concurrency

    say("(a) moto's raw publish rate")
    rows.append(raw_publish_rate(bench.fresh(), n, c))
    say("(a) the API against moto")
    report, calls = api_traffic(bench.fresh(), n, c)
    rows.append(traffic_row("a", "API (batched)", report, calls, f"{c} clients"))
    rows[-1].ratio = f"{ratio(rows, 'API (batched)', 'moto raw Publish'):.0%} of raw"

    say(f"(b) publishing through the proxy (+{bench.delay_ms:g} ms per call), to an unsubscribed topic")
    settings = bench.fresh()
    aws = AwsClients(settings)
    aws.sns.create_topic(Name="cart-bench-unsubscribed")
    with FaultProxy(bench.moto.endpoint_url, delay_ms=bench.delay_ms) as proxy:
        for size, name in ((1, "API, 1 Publish per request"), (10, "API, PublishBatch of 10")):
            s = bench.settings(proxy.url, publish_batch_size=size, purchases_topic="cart-bench-unsubscribed")
            report, calls = api_traffic(s, n, c, proxy)
            rows.append(traffic_row("b", name, report, calls, f"{c} clients, +{bench.delay_ms:g} ms"))
    rows[-1].ratio = f"{ratio(rows, 'API, PublishBatch of 10', 'API, 1 Publish per request'):.1f}x"

    wn = max(n // 2, 100)
    for where in ("moto", "proxy"):
        for size in (1, 10):
            say(f"(c) worker receiving {size} at a time, {where}")
            settings = bench.fresh()
            fill_queue(settings, wn)
            if where == "proxy":
                with FaultProxy(bench.moto.endpoint_url, delay_ms=bench.delay_ms) as proxy:
                    row = worker_rate(bench.settings(proxy.url), wn, size, threads=2)
                row.variant += f" (+{bench.delay_ms:g} ms)"
            else:
                row = worker_rate(settings, wn, size, threads=2)
            rows.append(row)
        rows[-1].ratio = f"{rows[-1].per_second / rows[-2].per_second:.1f}x"
    return rows


def table(rows: list[Row]) -> str:
    header = "| phase | variant | purchases | seconds | per second | p50 ms | p99 ms | AWS calls | ratio | note |"
    lines = [header, "|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in rows:
        cells = [
            r.phase,
            r.variant,
            str(r.count),
            f"{r.seconds:.2f}",
            f"{r.per_second:.0f}",
            "" if r.p50_ms is None else f"{r.p50_ms:.1f}",
            "" if r.p99_ms is None else f"{r.p99_ms:.1f}",
            "" if r.calls is None else str(r.calls),
            r.ratio,
            r.note,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def goals(rows: list[Row]) -> list[tuple[str, bool, str]]:
    api_share = ratio(rows, "API (batched)", "moto raw Publish")
    batch_gain = ratio(rows, "API, PublishBatch of 10", "API, 1 Publish per request")
    batched = next(r for r in rows if r.variant == "API, PublishBatch of 10")
    return [
        ("(a) API ≥ 80 % of moto's raw publish rate", api_share >= 0.8, f"{api_share:.0%}"),
        ("(b) batching ≥ 5x accepted purchases/s", batch_gain >= 5, f"{batch_gain:.1f}x"),
        ("(b) batched p99 < 100 ms", (batched.p99_ms or 0) < 100, f"{batched.p99_ms:.1f} ms"),
    ]


def render(rows: list[Row], args: argparse.Namespace, elapsed: float) -> str:
    verdicts = "\n".join(f"- {'met' if ok else 'NOT met'}: {name} ({value})" for name, ok, value in goals(rows))
    return (
        f"{table(rows)}\n\nGoals:\n{verdicts}\n\n"
        f"{args.count} purchases per phase, {args.concurrency} concurrent clients, proxy delay {args.delay_ms:g} ms; "
        f"benchmark took {elapsed:.0f} s on {machine()}.\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.ingest", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=1000, help="purchases per phase (default %(default)s)")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent clients (default %(default)s)")
    parser.add_argument("--delay-ms", type=float, default=20.0, help="proxy delay per AWS call (default 20 ms)")
    parser.add_argument("--write", type=Path, help="also write the table into this markdown file")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with MotoServer() as moto:
        rows = run(Bench(moto, args.count, args.concurrency, args.delay_ms))
    text = render(rows, args, time.perf_counter() - started)
    print(text)
    if args.write:
        write_section(args.write, "ingest", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
