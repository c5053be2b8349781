"""Lakehouse benchmark: every comparison side by side in one run, printed as a table.

(a) One hour of N purchases (100k by default) from bronze to gold: the bronze read from DynamoDB
    (the moto server, paginated Query on the ingest-hour index) on its own row, then silver
    (PySpark) and gold (dbt-duckdb) with their quality gates. Silver runs twice, side by side: on
    a Spark Connect server that has built silver once before (``cart_dev.spark_server``, as
    ``make run`` starts and warms it), then in the process's own Spark, whose JIT is cold as every
    launched run's would be. Goal: silver + gold under 20 s (100k) or 90 s (1M), judged on the
    Connect server, the local stack's default; gold runs once (no Spark in it).
    With ``--profile``, the same runs are broken down per step (each Dagster step, the spans each
    asset and check reports in its ``timings`` metadata, dbt's startup and each model and test,
    and Dagster's own overhead: the run's wall time minus its steps), and the Spark job's lazy
    stages are timed one by one (read, + contract rules, + dedupe, + enrichment; each forced with
    Spark's ``noop`` sink on the warm session) to split its "classify and count" span.
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

from dagster import DagsterEventType, ExecuteInProcessResult
from dagster_pyspark import LazyPySparkResource
from pyspark.sql import DataFrame

from bench.report import machine, peak_rss_gb, say, write_section
from cart_api.models import Purchase
from cart_api.settings import Settings
from cart_api.store import to_item
from cart_aws.aws import AwsClients
from cart_aws.provision import provision
from cart_dev import spark_server
from cart_dev.local_aws import MotoServer
from cart_dev.seed import put_purchases, stored_purchases
from cart_lakehouse.assets.bronze import merge_bronze_hour
from cart_lakehouse.assets.gold import DBT_BUILD, DBT_PARSE, PUBLISH_ALL
from cart_lakehouse.jobs.silver import check_lines, decide_fate, read_lines, silver_rows
from cart_lakehouse.lake import Lake
from cart_lakehouse.layout import PRODUCTS_FILE, bronze_file
from cart_lakehouse.local import HOURLY_GROUPS, local_resources, materialize_hours
from cart_lakehouse.partitions import Hour
from cart_lakehouse.resources import SparkResource, spark_config
from cart_lakehouse.settings import LakeSettings


@dataclass
class Row:
    phase: str
    step: str
    purchases: int
    seconds: float
    note: str = ""
    ratio: str = ""
    judged: bool = False  # the row goal (a) is judged on

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
    return profiled_run(resources, groups, hours)[0]


def profiled_run(
    resources: dict[str, Any], groups: tuple[str, ...], hours: list[Hour] | None
) -> tuple[float, ExecuteInProcessResult]:
    start = time.perf_counter()
    result = materialize_hours(resources, hours, groups)
    return time.perf_counter() - start, result


@dataclass
class Span:
    name: str
    seconds: float
    depth: int = 0


# spans every gold model reports with the same value (the step's, not the model's)
SHARED_SPANS = (DBT_PARSE, DBT_BUILD, PUBLISH_ALL)


def _seconds(value: Any) -> dict[str, float]:
    return {str(k): float(v) for k, v in dict(value).items()}


def run_profile(label: str, wall: float, result: ExecuteInProcessResult) -> list[Span]:
    """The run's steps with the spans their assets and checks reported, and Dagster's overhead."""
    timings: dict[str, list[tuple[str, dict[str, float]]]] = {}
    for event in result.get_asset_materialization_events():
        entry = event.materialization.metadata.get("timings")
        if entry is not None and event.step_key and event.asset_key:
            timings.setdefault(event.step_key, []).append((event.asset_key.to_user_string(), _seconds(entry.value)))
    for check in result.get_asset_check_evaluations():
        entry = check.metadata.get("timings")
        step = f"{check.asset_key.to_python_identifier()}_{check.check_name}"
        if entry is not None:
            timings.setdefault(step, []).append(("", _seconds(entry.value)))
    spans = [Span(label, wall)]
    steps = 0.0
    for event in result.all_events:
        if event.event_type not in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE):
            continue
        seconds = float(getattr(event.event_specific_data, "duration_ms", 0.0) or 0.0) / 1000
        steps += seconds
        spans.append(Span(f"step {event.step_key}", seconds, 1))
        reports = timings.get(event.step_key or "", [])
        # the step's shared spans (one dbt invocation, one publishing of all tables) once, first: the
        # models' and tables' own spans inside them follow
        shared = {name: value for _, reported in reports for name, value in reported.items() if name in SHARED_SPANS}
        spans.extend(Span(name, value, 2) for name, value in shared.items())
        for owner, reported in reports:
            spans.extend(
                Span(f"{owner} {name}".strip(), value, 2) for name, value in reported.items() if name not in shared
            )
    spans.append(Span("Dagster overhead (run wall − its steps)", wall - steps, 1))
    return spans


def spark_stages(bench: Bench, lake: Lake, hour: Hour) -> list[Span]:
    """The silver job's lazy stages one by one on the warm session, each forced to completion with
    the ``noop`` sink; each row is the stage's increment over the one before."""
    spark = bench.spark_resource.spark_session
    paths = [lake.uri(bronze_file(hour))]
    products = spark.read.parquet(lake.uri(PRODUCTS_FILE))

    def run(frame: DataFrame) -> float:
        start = time.perf_counter()
        frame.write.format("noop").mode("overwrite").save()
        return time.perf_counter() - start

    read = run(read_lines(spark, paths))
    rules = run(check_lines(read_lines(spark, paths)))
    dedupe = run(decide_fate(check_lines(read_lines(spark, paths))))
    enrich = run(silver_rows(decide_fate(check_lines(read_lines(spark, paths))), products))
    return [
        Span("silver's Spark stages, each forced with the noop sink (increments)", enrich),
        Span("read bronze JSON lines", read, 1),
        Span("+ parse and contract rules", rules - read, 1),
        Span("+ dedupe (window per purchase_id)", dedupe - rules, 1),
        Span("+ enrichment (products join, casts)", enrich - dedupe, 1),
    ]


def profile_table(spans: list[Span], total: float) -> str:
    lines = ["| step | seconds | share of silver + gold |", "|---|---:|---:|"]
    for s in spans:
        indent = "· " * s.depth
        lines.append(f"| {indent}{s.name} | {s.seconds:.2f} | {100 * s.seconds / total:.0f}% |")
    return "\n".join(lines)


def peak_memory(bench: Bench) -> str:
    """Peak memory of this process (Dagster, dbt, DuckDB, pyarrow, and the benchmark's own generated
    purchases) and of Spark's JVM (driver and, in local mode, the executors)."""
    jvm = bench.spark_resource.spark_session.sparkContext._jvm
    jvm_pid = jvm.java.lang.ProcessHandle.current().pid() if jvm is not None else 0
    return f"peak memory: Python {peak_rss_gb():.2f} GB, Spark JVM {peak_rss_gb(jvm_pid):.2f} GB"


def start_spark(bench: Bench) -> Row:
    start = time.perf_counter()
    bench.spark_resource.spark_session.range(1).count()
    return Row("-", "Spark session start (local[2], once per process)", 0, time.perf_counter() - start)


OWN_SPARK = "the run's own Spark (a JVM per run: its start excluded, its cold JIT not)"
CONNECT = "a warm Spark Connect server (as make run starts)"


def one_hour(
    bench: Bench, count: int, profile: list[Span] | None = None, direct: bool = False, warmup: int | None = 20_000
) -> list[Row]:
    aws, resources = bench.fresh("one-hour")
    hour = Hour(datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3))
    timed_run(resources, ("reference",), None)
    started = time.perf_counter()
    if direct:
        # bronze's own merge writes the file from the same items, without the emulator's Query
        # (moto walks every item of the table per Query page: minutes for 100k purchases)
        say(f"(a) writing {count} purchases straight into bronze for {hour.key}")
        shards = bench.settings.ingest_shards
        items = [
            to_item(Purchase.model_validate(p).model_dump(), shards)
            for p in stored_purchases(hour.start, count, seed=1000)
        ]
        merge_bronze_hour(items, Lake.open(resources["lake"].root), hour)
        bronze, bronze_run = time.perf_counter() - started, None
    else:
        say(f"(a) putting {count} purchases into DynamoDB for {hour.key}")
        bench.seed(aws, [hour], count)
        say(f"(a) seeded in {time.perf_counter() - started:.0f} s; materializing bronze")
        bronze, bronze_run = profiled_run(resources, ("bronze",), [hour])
    connect: tuple[float, ExecuteInProcessResult, float] | None = None
    if warmup is not None:
        # first, while this process's Python is as cold as a launched run's: silver on a Spark
        # Connect server that has already built silver once (make run's server warms itself so)
        say(f"(a) starting a Spark Connect server and warming it up on {warmup} generated purchases")
        with spark_server.serving(bench.spark_settings) as url, spark_server.connect_mode():
            warm = spark_server.warm_up(url, warmup)
            remote = bench.spark_settings.model_copy(update={"spark_remote": url})
            say(f"(a) silver through the Spark Connect server (warmed up in {warm:.0f} s)")
            connect_resources = {**resources, "pyspark": SparkResource(spark_config=spark_config(remote))}
            connect = (*profiled_run(connect_resources, ("silver",), [hour]), warm)
    say("(a) silver in this process's own Spark")
    silver, silver_run = profiled_run(resources, ("silver",), [hour])
    say("(a) gold")
    gold, gold_run = profiled_run(resources, ("gold", "star", "marts"), [hour])  # one dbt step builds all three
    lake = Lake.open(resources["lake"].root)
    if profile is not None:
        say("(a) profiling silver's Spark stages")
        profile.extend(
            [
                *(run_profile("bronze run", bronze, bronze_run) if bronze_run else []),
                *(run_profile("silver run, Spark Connect server", connect[0], connect[1]) if connect else []),
                *run_profile("silver run, the process's own Spark", silver, silver_run),
                *spark_stages(bench, lake, hour),
                *run_profile("gold run", gold, gold_run),
            ]
        )
    size = sum(lake.size(f) for f in lake.files("bronze"))
    goal = f"goal < {20 if count <= 100_000 else 90} s"
    connect_rows = []
    if connect is not None:
        both = connect[0] + gold
        faster = f"{(silver + gold) / both:.1f}x faster"
        connect_rows = [
            Row("a", f"silver: {CONNECT}", count, connect[0], f"its warm-up took {connect[2]:.0f} s, before"),
            Row("a", f"silver + gold: {CONNECT}", count, both, goal, faster, judged=True),
        ]
    return [
        Row(
            "a",
            "bronze: items merged into JSON lines (no DynamoDB)" if direct else "bronze: DynamoDB Query → JSON lines",
            count,
            bronze,
            f"{size / 1e6:.1f} MB of JSON",
        ),
        *connect_rows,
        Row("a", f"silver: {OWN_SPARK}", count, silver, "PySpark + contract and reconciliation checks"),
        Row("a", "gold: dbt build (gold, star, marts; models and tests) + checks", count, gold),
        Row(
            "a",
            f"silver + gold: {OWN_SPARK}",
            count,
            silver + gold,
            goal if connect is None else "",
            judged=connect is None,
        ),
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
        groups = HOURLY_GROUPS
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


def headline(rows: list[Row]) -> Row:
    """The silver + gold row the goal is judged on: a warm Spark Connect server's when measured."""
    return next(r for r in rows if r.judged)


def goals(rows: list[Row]) -> list[tuple[str, bool, str]]:
    both = headline(rows)
    limit = 20 if both.purchases <= 100_000 else 90
    spark = both.step.removeprefix("silver + gold: ")
    verdicts = [
        (
            f"(a) one hour of {both.purchases} purchases through silver and gold < {limit} s ({spark})",
            both.seconds < limit,
            f"{both.seconds:.1f} s",
        )
    ]
    backfill_rows = [r for r in rows if r.phase == "b"]
    if backfill_rows:
        single, separate = backfill_rows
        gain = separate.seconds / single.seconds
        verdicts.append(("(b) single-run backfill ≥ 5x faster than one run per hour", gain >= 5, f"{gain:.1f}x"))
    return verdicts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.lakehouse", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--purchases", type=int, default=100_000, help="purchases in the one-hour phase (%(default)s)")
    parser.add_argument("--hours", type=int, default=24, help="hours in the backfill phase (%(default)s)")
    parser.add_argument("--per-hour", type=int, default=1000, help="purchases per backfilled hour (%(default)s)")
    parser.add_argument("--shuffle-partitions", type=int, default=4, help="spark.sql.shuffle.partitions (%(default)s)")
    parser.add_argument("--profile", action="store_true", help="print where (a)'s time goes, step by step")
    parser.add_argument(
        "--bronze-direct",
        action="store_true",
        help="(a) writes bronze from the generated items instead of reading them back from DynamoDB",
    )
    parser.add_argument("--skip-backfill", action="store_true", help="run phase (a) only")
    parser.add_argument(
        "--no-connect", action="store_true", help="(a) without the Spark Connect server variant (the run's own only)"
    )
    parser.add_argument(
        "--warmup", type=int, default=20_000, help="generated purchases the Connect server warms up on (%(default)s)"
    )
    parser.add_argument("--write", type=Path, help="also write the table into this markdown file")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with MotoServer() as moto, tempfile.TemporaryDirectory(prefix="cart-bench-lake-") as lake_root:
        bench = Bench(moto, Path(lake_root), args.shuffle_partitions)
        profile: list[Span] | None = [] if args.profile else None
        warmup = None if args.no_connect else args.warmup
        rows = [start_spark(bench), *one_hour(bench, args.purchases, profile, args.bronze_direct, warmup)]
        if not args.skip_backfill:
            rows.extend(backfill(bench, args.hours, args.per_hour))
        memory = peak_memory(bench)
    verdicts = "\n".join(f"- {'met' if ok else 'NOT met'}: {name} ({value})" for name, ok, value in goals(rows))
    both = headline(rows).seconds
    profiled = f"\n\nWhere (a)'s time goes:\n\n{profile_table(profile, both)}" if profile else ""
    text = (
        f"{table(rows)}{profiled}\n\nGoals:\n{verdicts}\n\n"
        f"In-process Dagster runs sharing one Spark session (local[2], {args.shuffle_partitions} shuffle partitions); "
        f"benchmark took {time.perf_counter() - started:.0f} s on {machine()}; {memory}.\n"
    )
    print(text)
    if args.write:
        write_section(args.write, "lakehouse", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
