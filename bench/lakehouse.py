"""Lakehouse benchmark: every comparison side by side in one run, printed as a table.

(a) One hour of N purchases (100k by default) from bronze to gold: the bronze read from DynamoDB
    (the moto server, paginated Query on the ingest-hour index) on its own row, then silver
    (PySpark) and gold (dbt-duckdb) with their quality gates. Goal: silver + gold under 60 s.
(b) A backfill of H hours (24 by default, M purchases each) as one run (the single-run backfill
    policy of every hourly asset) against one run per hour, bronze to gold with all checks.
    Goal: the single run at least 5x faster.

Runs are real Dagster runs, in-process (``materialize``) and in one process, so both variants
share one warm Spark session: separate runs launched by Dagster would each start their own
process and Spark session (about 6 s more per run), so (b) understates the single run's gain.
Spark's start is shown on its own row. Run: ``make bench`` or ``uv run python -m bench.lakehouse``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dagster_pyspark import LazyPySparkResource

from bench.report import machine, say, write_section
from cart_api.settings import Settings
from cart_aws.aws import AwsClients
from cart_aws.provision import provision
from cart_dev.local_aws import MotoServer
from cart_dev.seed import put_purchases, stored_purchases
from cart_lakehouse.lake import Lake
from cart_lakehouse.local import local_resources, materialize_hours
from cart_lakehouse.partitions import Hour
from cart_lakehouse.resources import spark_config
from cart_lakehouse.settings import LakeSettings


@dataclass
class Row:
    phase: str
    step: str
    purchases: int
    seconds: float
    note: str = ""
    ratio: str = ""

    @property
    def per_second(self) -> float:
        return self.purchases / self.seconds if self.seconds and self.purchases else 0.0


class Bench:
    def __init__(self, moto: MotoServer, lake_root: Path, shuffle_partitions: int) -> None:
        self.moto = moto
        self.lake_root = lake_root
        self.spark_settings = LakeSettings(spark_master="local[2]", spark_shuffle_partitions=shuffle_partitions)
        self.settings = Settings(aws_endpoint_url=moto.endpoint_url)
        self.spark_resource = LazyPySparkResource(spark_config=spark_config(self.spark_settings))

    def fresh(self, name: str) -> tuple[AwsClients, dict[str, Any]]:
        """An empty, provisioned moto server and an empty lake (products included) for a phase."""
        self.moto.reset()
        provision(self.settings)
        resources = local_resources(self.settings, str(self.lake_root / name), self.spark_settings)
        resources["pyspark"] = self.spark_resource  # one session for every phase
        return AwsClients(self.settings), resources

    def seed(self, aws: AwsClients, hours: list[Hour], per_hour: int) -> int:
        purchases = [p for i, h in enumerate(hours) for p in stored_purchases(h.start, per_hour, seed=1000 + i)]
        return put_purchases(aws, self.settings.purchases_table, purchases, threads=8)


def timed_run(resources: dict[str, Any], groups: tuple[str, ...], hours: list[Hour] | None) -> float:
    """One Dagster run of the groups' assets for an hour, a window of hours, or unpartitioned (None)."""
    start = time.perf_counter()
    materialize_hours(resources, hours, groups)
    return time.perf_counter() - start


def start_spark(bench: Bench) -> Row:
    start = time.perf_counter()
    bench.spark_resource.spark_session.range(1).count()
    return Row("-", "Spark session start (local[2], once per process)", 0, time.perf_counter() - start)


def one_hour(bench: Bench, count: int) -> list[Row]:
    aws, resources = bench.fresh("one-hour")
    hour = Hour(datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3))
    say(f"(a) putting {count} purchases into DynamoDB for {hour.key}")
    started = time.perf_counter()
    bench.seed(aws, [hour], count)
    say(f"(a) seeded in {time.perf_counter() - started:.0f} s; materializing reference and bronze")
    timed_run(resources, ("reference",), None)
    bronze = timed_run(resources, ("bronze",), [hour])
    say("(a) silver")
    silver = timed_run(resources, ("silver",), [hour])
    say("(a) gold")
    gold = timed_run(resources, ("gold",), [hour])
    lake = Lake.open(resources["lake"].root)
    size = sum(lake.size(f) for f in lake.files("bronze"))
    return [
        Row("a", "bronze: DynamoDB Query → JSON lines", count, bronze, f"{size / 1e6:.1f} MB of JSON"),
        Row("a", "silver: PySpark + contract and reconciliation checks", count, silver),
        Row("a", "gold: dbt build (3 models and their tests) + checks", count, gold),
        Row("a", "silver + gold", count, silver + gold, "goal < 60 s"),
    ]


def backfill(bench: Bench, hours_count: int, per_hour: int) -> list[Row]:
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)
    hours = [Hour(day + timedelta(hours=i)) for i in range(hours_count)]
    total = hours_count * per_hour
    rows = []
    for variant in ("single", "separate"):
        aws, resources = bench.fresh(f"backfill-{variant}")
        say(f"(b) {variant}: putting {total} purchases into DynamoDB ({hours_count} hours)")
        bench.seed(aws, hours, per_hour)
        timed_run(resources, ("reference",), None)
        groups = ("bronze", "silver", "gold")
        if variant == "single":
            say(f"(b) one run for {hours_count} hours")
            seconds = timed_run(resources, groups, hours)
            rows.append(Row("b", f"backfill of {hours_count} h as 1 run", total, seconds))
        else:
            seconds = 0.0
            for i, hour in enumerate(hours, 1):
                seconds += timed_run(resources, groups, [hour])
                say(f"(b) run {i}/{hours_count} done ({seconds:.0f} s so far)")
            rows.append(Row("b", f"backfill of {hours_count} h as {hours_count} runs", total, seconds))
    rows[0].ratio = f"{rows[1].seconds / rows[0].seconds:.1f}x faster"
    return rows


def table(rows: list[Row]) -> str:
    lines = [
        "| phase | step | purchases | seconds | purchases/s | ratio | note |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for r in rows:
        rate = f"{r.per_second:.0f}" if r.per_second else ""
        lines.append(f"| {r.phase} | {r.step} | {r.purchases} | {r.seconds:.1f} | {rate} | {r.ratio} | {r.note} |")
    return "\n".join(lines)


def goals(rows: list[Row]) -> list[tuple[str, bool, str]]:
    both = next(r for r in rows if r.step == "silver + gold")
    single, separate = (r for r in rows if r.phase == "b")
    gain = separate.seconds / single.seconds
    return [
        (
            f"(a) one hour of {both.purchases} purchases through silver and gold < 60 s",
            both.seconds < 60,
            f"{both.seconds:.1f} s",
        ),
        ("(b) single-run backfill ≥ 5x faster than one run per hour", gain >= 5, f"{gain:.1f}x"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.lakehouse", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--purchases", type=int, default=100_000, help="purchases in the one-hour phase (%(default)s)")
    parser.add_argument("--hours", type=int, default=24, help="hours in the backfill phase (%(default)s)")
    parser.add_argument("--per-hour", type=int, default=1000, help="purchases per backfilled hour (%(default)s)")
    parser.add_argument("--shuffle-partitions", type=int, default=4, help="spark.sql.shuffle.partitions (%(default)s)")
    parser.add_argument("--write", type=Path, help="also write the table into this markdown file")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with MotoServer() as moto, tempfile.TemporaryDirectory(prefix="cart-bench-lake-") as lake_root:
        bench = Bench(moto, Path(lake_root), args.shuffle_partitions)
        rows = [start_spark(bench), *one_hour(bench, args.purchases), *backfill(bench, args.hours, args.per_hour)]
    verdicts = "\n".join(f"- {'met' if ok else 'NOT met'}: {name} ({value})" for name, ok, value in goals(rows))
    text = (
        f"{table(rows)}\n\nGoals:\n{verdicts}\n\n"
        f"In-process Dagster runs sharing one Spark session (local[2], {args.shuffle_partitions} shuffle partitions); "
        f"benchmark took {time.perf_counter() - started:.0f} s on {machine()}.\n"
    )
    print(text)
    if args.write:
        write_section(args.write, "lakehouse", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
