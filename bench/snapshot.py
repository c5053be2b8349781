"""Local AWS snapshots: boto3 export/import (cart_dev.snapshot) against moto's request recorder.

Both keep 100k stored purchases across a restart of the moto server. The export reads the state
(Scan, receive, GetObject) into one gzip'd file and writes it back (BatchWriteItem, SendMessage,
PutObject) after provisioning; the recorder logs every request the server answers and replays the
log, one request after another, into a fresh server. Each variant starts its own servers.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from bench.report import machine, say, write_section
from cart_aws.aws import AwsClients
from cart_aws.provision import provision
from cart_aws.settings import AwsSettings
from cart_dev import snapshot
from cart_dev.local_aws import MotoServer
from cart_dev.seed import put_purchases, stored_purchases

HOUR = datetime(2026, 11, 25, 9, tzinfo=UTC)


def moto_api(server: MotoServer, path: str, data: bytes | None = None) -> bytes:
    request = urllib.request.Request(
        f"{server.endpoint_url}/moto-api/recorder/{path}",
        data=data,
        method="POST",
        headers={"Content-Type": "application/octet-stream"},  # not a form: moto reads the raw body
    )
    with urllib.request.urlopen(request, timeout=3600) as answer:
        return bytes(answer.read())


def provisioned(server: MotoServer) -> tuple[AwsClients, AwsSettings]:
    """Clients and settings for ``server``, with every resource provisioned on it."""
    settings = AwsSettings(aws_endpoint_url=server.endpoint_url)
    provision(settings)
    return AwsClients(settings), settings


def fill(server: MotoServer, purchases: int, threads: int = 8) -> tuple[AwsClients, AwsSettings]:
    aws, settings = provisioned(server)
    say(f"writing {purchases} purchases to DynamoDB")
    put_purchases(aws, settings.purchases_table, stored_purchases(HOUR, purchases, seed=1), threads)
    return aws, settings


def export_import(purchases: int, workdir: Path) -> list[tuple[str, float, int, int]]:
    path = workdir / snapshot.SNAPSHOT_FILE
    with MotoServer() as server:
        aws, settings = fill(server, purchases)
        say("boto3 export")
        taken = snapshot.take(aws, snapshot.Targets.of(settings), path)
    with MotoServer() as server:
        aws, settings = provisioned(server)
        say("boto3 import")
        restored = snapshot.restore(aws, path)
        count = aws.item_count(settings.purchases_table)
    return [
        ("boto3 export (Scan, receive, GetObject → gzip'd JSON lines)", taken.seconds, taken.size, count),
        ("boto3 import (BatchWriteItem ×8 threads, SendMessageBatch, PutObject)", restored.seconds, taken.size, count),
    ]


def recorder(purchases: int, workdir: Path) -> list[tuple[str, float, int, int]]:
    log = workdir / "recording.jsonl"
    env = {"MOTO_ENABLE_RECORDING": "true", "MOTO_RECORDER_FILEPATH": str(log)}
    with MotoServer(env=env) as server:
        # one writer: the recorder appends each request to its file unlocked, so concurrent requests
        # interleave their lines and the recording cannot be replayed (JSONDecodeError)
        fill(server, purchases, threads=1)
        say("recorder download")
        started = time.perf_counter()
        recording = moto_api(server, "download-recording")
        download = time.perf_counter() - started
    replay_log = workdir / "replayed.jsonl"
    with MotoServer(env={"MOTO_RECORDER_FILEPATH": str(replay_log)}) as server:
        say("recorder upload + replay")
        started = time.perf_counter()
        moto_api(server, "upload-recording", recording)
        moto_api(server, "replay-recording", b"")
        replay = time.perf_counter() - started
        count = AwsClients(AwsSettings(aws_endpoint_url=server.endpoint_url)).item_count("cart-purchases")
    return [
        ("moto recorder: download-recording", download, len(recording), count),
        ("moto recorder: upload-recording + replay-recording", replay, len(recording), count),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.snapshot", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--purchases", type=int, default=100_000, help="stored purchases (%(default)s)")
    parser.add_argument("--write", type=Path, help="also write the table into this markdown file")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cart-bench-snapshot-") as workdir:
        rows = export_import(args.purchases, Path(workdir)) + recorder(args.purchases, Path(workdir))
    lines = [
        "| variant | purchases | seconds | file MB | purchases after restore |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {what} | {args.purchases} | {secs:.1f} | {size / 1e6:.1f} | {count} |"
            for what, secs, size, count in rows
        ),
    ]
    text = "\n".join(lines) + f"\n\nBenchmark took {time.perf_counter() - started:.0f} s on {machine()}.\n"
    print(text)
    if args.write:
        write_section(args.write, "local AWS snapshots", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
