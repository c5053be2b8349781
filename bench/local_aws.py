"""Local AWS benchmark: stock moto against the project's patched moto (cart_dev/moto_server.py).

Both servers run side by side in one run, and each measurement is taken on stock, then on
patched, so the machine's noise hits both alike (ratios). What is measured is what the patches
are for, where moto's cost grows with what it holds:

- BatchWriteItem of N stored purchases (``cart_dev.seed.put_purchases``, 8 threads);
- SendMessageBatch into the purchases queue already holding K messages;
- SNS PublishBatch → SQS delivery (raw, as provisioned) into that queue at K queued;
- ReceiveMessage + DeleteMessageBatch (what the worker does) at K queued;

then, on the patched server only, the volumes of ``make run``: 100k purchases written, and a
snapshot of them restored into a fresh server (``cart_dev.snapshot.restore``, as bench/snapshot.py).

Phase ``query`` (its own section of docs/benchmarks.md) reads the sharded ingest-hour index as the
lakehouse does (``cart_aws.ingest_shards``), on a fresh pair of servers: a ``late_data`` tick (COUNT
of 48 hours, a Query per shard) on ``make run``'s history (7 hours of 200 purchases), then, with the
table grown to 50k purchases, one hour of 10k read back whole and counted; both servers must
answer the same. The patched server also reads with the shards in parallel, as on AWS.
Run: ``make bench`` or ``uv run python -m bench.local_aws`` (``--phases query`` for that one alone).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from bench.report import machine, say, write_section
from bench.snapshot import provisioned
from cart_aws.aws import AwsClients
from cart_aws.ingest_shards import count_hour, query_hour
from cart_aws.settings import AwsSettings
from cart_dev import snapshot
from cart_dev.local_aws import MotoServer
from cart_dev.seed import ingest_hour_key, put_purchases, stored_purchases

HOUR = datetime(2026, 11, 25, 9, tzinfo=UTC)
BODY = json.dumps({"purchase_id": "0" * 36, "buyer_id": "B000001", "product_id": "P0001", "total_amount": 59.9})


@dataclass
class Side:
    """One server under test, provisioned as ``make run`` provisions it."""

    name: str
    server: MotoServer
    aws: AwsClients
    settings: AwsSettings

    @classmethod
    def start(cls, name: str, stock: bool) -> Side:
        server = MotoServer(stock=stock).start()
        aws, settings = provisioned(server)
        return cls(name, server, aws, settings)

    @property
    def queue_url(self) -> str:
        return self.aws.queue_url(self.settings.purchases_queue)

    def depth(self) -> int:
        return self.aws.queue_depth(self.settings.purchases_queue)


@dataclass
class Row:
    what: str
    unit: str
    stock: float
    patched: float
    count_stock: int
    count_patched: int

    @property
    def ratio(self) -> float:
        if self.unit == "s":
            return self.stock / self.patched if self.patched else float("inf")
        return self.patched / self.stock if self.stock else float("inf")


def send_batches(side: Side, count: int) -> int:
    url = side.queue_url
    for _ in range(count // 10):
        side.aws.sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": BODY} for i in range(10)])
    return count // 10 * 10


def rate(work: Callable[[], int], limit: int, window: float) -> tuple[float, int]:
    """Call ``work`` (which returns how many messages it handled) until ``limit`` messages or
    ``window`` seconds; (messages/s, messages)."""
    done = 0
    started = time.perf_counter()
    while done < limit and time.perf_counter() - started < window:
        done += work()
    return done / (time.perf_counter() - started), done


def sqs_rows(sides: list[Side], queued: int, limit: int, window: float) -> list[Row]:
    for side in sides:
        say(f"{side.name}: filling the purchases queue with {queued} messages")
        send_batches(side, queued)
    results: dict[str, list[tuple[float, int]]] = {}
    for side in sides:
        url, topic = side.queue_url, side.aws.topic_arn(side.settings.purchases_topic)
        say(f"{side.name}: SendMessageBatch at {queued} queued")

        def send(side: Side = side) -> int:
            return send_batches(side, 10)

        sent = rate(send, limit, window)
        say(f"{side.name}: PublishBatch → SQS at {queued + sent[1]} queued")
        before = side.depth()

        def publish(topic: str = topic, side: Side = side) -> int:
            entries: list[Any] = [{"Id": str(i), "Message": BODY} for i in range(10)]
            answer = side.aws.sns.publish_batch(TopicArn=topic, PublishBatchRequestEntries=entries)
            return len(answer.get("Successful", []))

        published = rate(publish, limit, window)
        delivered = side.depth() - before
        if delivered != published[1]:
            raise RuntimeError(f"{side.name}: {published[1]} published, {delivered} delivered to the queue")
        say(f"{side.name}: ReceiveMessage + DeleteMessageBatch at {side.depth()} queued")

        def consume(url: str = url, side: Side = side) -> int:
            got = side.aws.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            messages = got.get("Messages", [])
            if messages:
                side.aws.sqs.delete_message_batch(
                    QueueUrl=url,
                    Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
                )
            return len(messages)

        consumed = rate(consume, limit, window)
        results[side.name] = [sent, published, consumed]
    names = [
        f"SendMessageBatch into a queue holding {queued}",
        f"SNS PublishBatch → SQS delivery at ≥{queued} queued",
        f"ReceiveMessage + DeleteMessageBatch at ≥{queued} queued",
    ]
    stock, patched = results["stock"], results["patched"]
    return [Row(name, "messages/s", s[0], p[0], s[1], p[1]) for name, s, p in zip(names, stock, patched, strict=True)]


def write_rows(sides: list[Side], purchases: int) -> Row:
    seconds = {}
    for side in sides:
        items = stored_purchases(HOUR, purchases, seed=1)
        say(f"{side.name}: BatchWriteItem of {purchases} purchases")
        started = time.perf_counter()
        put_purchases(side.aws, side.settings.purchases_table, items)
        seconds[side.name] = time.perf_counter() - started
    return Row(
        f"BatchWriteItem of {purchases} purchases (8 threads)",
        "s",
        seconds["stock"],
        seconds["patched"],
        purchases,
        purchases,
    )


def volume_rows(purchases: int) -> list[tuple[str, float, int]]:
    """On the patched server: ``purchases`` written, snapshotted, and restored into a fresh server."""
    with tempfile.TemporaryDirectory(prefix="cart-bench-local-aws-") as workdir:
        path = Path(workdir) / snapshot.SNAPSHOT_FILE
        with MotoServer() as server:
            aws, settings = provisioned(server)
            items = stored_purchases(HOUR, purchases, seed=1)
            say(f"patched: writing {purchases} purchases")
            started = time.perf_counter()
            put_purchases(aws, settings.purchases_table, items)
            written = time.perf_counter() - started
            say("patched: taking a snapshot")
            taken = snapshot.take(aws, snapshot.Targets.of(settings), path)
        with MotoServer() as server:
            aws, settings = provisioned(server)
            say("patched: restoring the snapshot into a fresh server")
            restored = snapshot.restore(aws, path)
            count = aws.item_count(settings.purchases_table)
    if count != purchases:
        raise RuntimeError(f"{count} purchases after the restore, {purchases} expected")
    return [
        (f"{purchases} purchases written (BatchWriteItem, 8 threads)", written, purchases),
        ("snapshot taken (cart_dev.snapshot.take)", taken.seconds, purchases),
        ("snapshot restored into a fresh server (cart_dev.snapshot.restore)", restored.seconds, count),
    ]


# ---- phase query: the sharded ingest-hour index ----

LOOKBACK = 48  # hours a late_data tick counts (cart_lakehouse.sensors.late_data.LOOKBACK_HOURS)


@dataclass
class QueryRow:
    what: str
    calls: int
    stock: float | None  # seconds; None: not run on stock moto
    patched: float

    @property
    def ratio(self) -> str:
        return f"{self.stock / self.patched:.0f}x" if self.stock is not None and self.patched else ""


def timed(work: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = work()
    return time.perf_counter() - started, result


def late_data_tick(side: Side, hours: list[datetime], threads: int | None = None) -> list[int]:
    """What a late_data tick asks DynamoDB: the COUNT of each hour, every shard of it."""
    table, index = side.settings.purchases_table, side.settings.ingest_hour_index
    if threads is None:
        return [count_hour(side.aws, table, index, ingest_hour_key(hour)) for hour in hours]
    return [
        sum(
            int(page.get("Count", 0))
            for page in query_hour(side.aws, table, index, ingest_hour_key(hour), threads=threads, Select="COUNT")
        )
        for hour in hours
    ]


def read_hour(side: Side, hour: datetime, threads: int | None = None) -> list[str]:
    """Every purchase id of one hour, read as bronze reads it (every shard, every page)."""
    pages = query_hour(
        side.aws, side.settings.purchases_table, side.settings.ingest_hour_index, ingest_hour_key(hour), threads=threads
    )
    return sorted(item["purchase_id"]["S"] for page in pages for item in page.get("Items", []))


def same(what: str, answers: dict[str, Any]) -> Any:
    first, *others = answers.values()
    if any(other != first for other in others):
        raise RuntimeError(f"{what}: the servers answered differently")
    return first


def query_rows(hour_purchases: int, table_purchases: int) -> tuple[list[QueryRow], int]:
    """The late_data tick on make run's history, then the hour read and counted at ``table_purchases``."""
    sides = [Side.start("stock", stock=True), Side.start("patched", stock=False)]
    try:
        shards = sides[0].settings.index_read_shards
        lookback = [HOUR - timedelta(hours=h) for h in range(LOOKBACK)]
        history = [p for h in range(1, 8) for p in stored_purchases(HOUR - timedelta(hours=h), 200, seed=h)]
        # the rest of the table: the hour read, and earlier hours around the lookback window
        others = table_purchases - hour_purchases - len(history)
        spread = [HOUR - timedelta(hours=8 + h) for h in range(60)]
        rest = [
            *stored_purchases(HOUR, hour_purchases, seed=100),
            *(p for n, h in enumerate(spread) for p in stored_purchases(h, others // len(spread), seed=200 + n)),
        ]
        rows: list[QueryRow] = []
        seconds: dict[str, dict[str, float]] = {side.name: {} for side in sides}
        counts: dict[str, Any] = {}
        for side in sides:
            say(f"{side.name}: {len(history)} purchases in 7 hours, then a late_data tick")
            put_purchases(side.aws, side.settings.purchases_table, history)
            seconds[side.name]["tick"], counts[side.name] = timed(partial(late_data_tick, side, lookback))
        assert sum(same("late_data tick", counts)) == len(history)
        patched = sides[1]
        tick_parallel, counted = timed(lambda: late_data_tick(patched, lookback, threads=16))
        assert sum(counted) == len(history)
        for side in sides:
            say(f"{side.name}: {len(rest)} more purchases ({hour_purchases} in the hour read)")
            put_purchases(side.aws, side.settings.purchases_table, rest)
            say(f"{side.name}: reading and counting the hour")
            seconds[side.name]["read"], counts[side.name] = timed(partial(read_hour, side, HOUR))
            seconds[side.name]["count"], _ = timed(partial(late_data_tick, side, [HOUR]))
        assert len(same("hour read", counts)) == hour_purchases
        read_parallel, ids = timed(lambda: read_hour(patched, HOUR, threads=16))
        assert ids == counts["patched"]
        say("patched: a late_data tick on the grown table")
        big_tick, counted = timed(lambda: late_data_tick(patched, lookback))
        big_tick_parallel, _ = timed(lambda: late_data_tick(patched, lookback, threads=16))
        stock, fast = seconds["stock"], seconds["patched"]
        tick_calls = LOOKBACK * shards
        rows = [
            QueryRow(
                f"late_data tick: COUNT {LOOKBACK} hours, table of {len(history)} purchases in 7 hours",
                tick_calls,
                stock["tick"],
                fast["tick"],
            ),
            QueryRow("the same, shards in parallel (16 threads)", tick_calls, None, tick_parallel),
            QueryRow(
                f"read one hour of {hour_purchases} purchases (query_hour), table of {table_purchases}",
                shards,
                stock["read"],
                fast["read"],
            ),
            QueryRow("the same, shards in parallel (16 threads)", shards, None, read_parallel),
            QueryRow("COUNT that hour (count_hour)", shards, stock["count"], fast["count"]),
            QueryRow(
                f"late_data tick on that table ({sum(counted)} purchases in the {LOOKBACK} hours)",
                tick_calls,
                None,
                big_tick,
            ),
            QueryRow("the same, shards in parallel (16 threads)", tick_calls, None, big_tick_parallel),
        ]
        return rows, shards
    finally:
        for side in sides:
            side.server.stop()


def render_query(rows: list[QueryRow], shards: int, took: float) -> str:
    lines = [
        "| measurement | Query calls | stock moto s | patched moto s | ratio |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {r.what} | {r.calls} | {'—' if r.stock is None else f'{r.stock:.2f}'} | {r.patched:.2f} | {r.ratio} |"
            for r in rows
        ),
    ]
    return (
        "\n".join(lines)
        + f"\n\n{shards} shards per hour; one shard at a time unless said (what readers do against moto, "
        "`EMULATOR_QUERY_THREADS`); both servers answered the same counts and purchase ids; — : not run on "
        f"stock moto (minutes).\n\nBenchmark took {took:.0f} s on {machine()}.\n"
    )


def render(rows: list[Row], volume: list[tuple[str, float, int]], took: float) -> str:
    lines = [
        "| measurement | unit | stock moto | patched moto | ratio |",
        "|---|---|---:|---:|---:|",
        *(
            f"| {r.what} | {r.unit} | {r.stock:.1f} ({r.count_stock}) | {r.patched:.1f} ({r.count_patched}) "
            f"| {r.ratio:.1f}x |"
            for r in rows
        ),
    ]
    text = (
        "\n".join(lines)
        + "\n\n(messages or purchases handled in parentheses; ratio: how many times faster patched is)\n"
    )
    if volume:
        text += "\n| patched moto only | purchases | seconds |\n|---|---:|---:|\n"
        text += "".join(f"| {what} | {n} | {secs:.1f} |\n" for what, secs, n in volume)
    return text + f"\nBenchmark took {took:.0f} s on {machine()}.\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.local_aws", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--phases",
        default="moto,query",
        help="comma-separated: moto (writes, SQS, volume), query (the ingest-hour index) (%(default)s)",
    )
    parser.add_argument(
        "--purchases", type=int, default=20_000, help="purchases written, stock vs patched (%(default)s)"
    )
    parser.add_argument("--queued", type=int, default=1000, help="messages already queued (%(default)s)")
    parser.add_argument("--messages", type=int, default=300, help="messages per SQS measurement, at most (%(default)s)")
    parser.add_argument("--window", type=float, default=20.0, help="seconds per SQS measurement, at most (%(default)s)")
    parser.add_argument(
        "--volume", type=int, default=100_000, help="purchases written and restored, patched only (0: skip)"
    )
    parser.add_argument("--hour-purchases", type=int, default=10_000, help="purchases of the hour read (%(default)s)")
    parser.add_argument(
        "--table-purchases", type=int, default=50_000, help="purchases in the table it is read from (%(default)s)"
    )
    parser.add_argument("--write", type=Path, help="also write the table into this markdown file")
    args = parser.parse_args(argv)
    phases = set(args.phases.split(","))
    if unknown := phases - {"moto", "query"}:
        parser.error(f"unknown phases: {', '.join(sorted(unknown))} (known: moto, query)")
    if "moto" in phases:
        started = time.perf_counter()
        sides = [Side.start("stock", stock=True), Side.start("patched", stock=False)]
        try:
            rows = [write_rows(sides, args.purchases), *sqs_rows(sides, args.queued, args.messages, args.window)]
        finally:
            for side in sides:
                side.server.stop()
        volume = volume_rows(args.volume) if args.volume else []
        text = render(rows, volume, time.perf_counter() - started)
        print(text)
        if args.write:
            write_section(args.write, "local AWS: stock vs patched moto", text)
    if "query" in phases:
        started = time.perf_counter()
        query, shards = query_rows(args.hour_purchases, args.table_purchases)
        text = render_query(query, shards, time.perf_counter() - started)
        print(text)
        if args.write:
            write_section(args.write, "local AWS: the ingest-hour index, stock vs patched moto", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
