"""``cart-dev --once``: the README's run command starts everything, seeds traffic, sees it stored,
bootstraps the lakehouse (past hours written to DynamoDB, materialized bronze → gold through
Dagster's GraphQL API), stops."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cart_dev.local_aws import answers, free_port
from cart_dev.supervisor import history_hours, history_seed
from cart_lakehouse.layout import GOLD_TABLES, PRODUCTS_FILE, bronze_file
from cart_lakehouse.partitions import Hour

HISTORY_HOURS, PER_HOUR = 2, 20


@pytest.mark.timeout(660)
def test_run_command_brings_the_stack_up_stores_the_seed_traffic_and_materializes_past_hours(tmp_path: Path) -> None:
    api_port, aws_port, dagster_port = free_port(), free_port(), free_port()
    lake = tmp_path / "lake"
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
            "--state-dir",
            str(tmp_path),
            "--history-hours",
            str(HISTORY_HOURS),
            "--history-per-hour",
            str(PER_HOUR),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "CART_LAKE_ROOT": str(lake)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "Stored:" in out
    assert f"http://127.0.0.1:{api_port}/docs" in out
    assert f"Dagster UI (assets)   http://127.0.0.1:{dagster_port}" in out
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

    # everything it started has stopped
    assert not answers(f"http://127.0.0.1:{api_port}/health")
    assert not answers(f"http://127.0.0.1:{aws_port}/moto-api/")
    assert not answers(f"http://127.0.0.1:{dagster_port}/server_info")


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
