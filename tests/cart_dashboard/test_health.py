"""The health strip: each item from its real source (Dagster's webserver and GraphQL over a
temporary instance, SQS on the moto server, the lake), and "unavailable" with a reason, quickly,
when a source is down or does not answer."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as arrow
import pyarrow.parquet as pq
import pytest
import uvicorn
from dagster import AssetCheckEvaluation, AssetCheckSeverity, AssetKey, AssetMaterialization, DagsterInstance
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster_webserver.webserver import DagsterWebserver
from plotly.utils import PlotlyJSONEncoder

from cart_api.settings import Settings
from cart_aws.aws import AwsClients
from cart_aws.settings import AwsSettings
from cart_dashboard.app import render_health
from cart_dashboard.health import Health
from cart_dev.local_aws import free_port
from cart_lakehouse.lake import Lake
from cart_lakehouse.layout import SILVER_QUARANTINE

DAY = date(2026, 11, 21)


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    """A lake whose silver quarantined 3 rows on DAY and 2 on the day after."""
    lake = Lake.open(str(tmp_path / "lake"))
    for day, hour, rows in ((21, 10, 2), (21, 11, 1), (22, 3, 2)):
        folder = lake.path(f"{SILVER_QUARANTINE}/year=2026/month=11/day={day:02d}/hour={hour:02d}")
        lake.fs.create_dir(folder, recursive=True)
        table = arrow.table({"raw": ["{}"] * rows, "reason": ["total_amount: must be > 0"] * rows})
        pq.write_table(table, f"{folder}/part-0.parquet")
    return lake


def by_key(items: list) -> dict:  # type: ignore[type-arg]
    return {item.key: item for item in items}


def test_every_item_says_unavailable_quickly_when_dagster_and_sqs_are_down(lake: Lake) -> None:
    nothing = f"http://127.0.0.1:{free_port()}"  # refuses connections
    health = Health(nothing, AwsSettings(aws_endpoint_url=f"http://127.0.0.1:{free_port()}"), lake, timeout=0.5)

    start = time.monotonic()
    items = by_key(health.items(DAY, DAY))

    assert time.monotonic() - start < 3
    for key in ("bronze", "silver", "gold", "marts", "freshness", "failed-checks", "dlq"):
        assert (items[key].text, items[key].status) == ("unavailable", "unavailable"), items[key]
    assert f"Dagster not reachable at {nothing}" in items["bronze"].detail
    assert "SQS did not answer for cart-purchases-dlq" in items["dlq"].detail
    assert (items["quarantine"].text, items["quarantine"].status) == ("3", "warn")  # the lake still answers
    strip = json.dumps(render_health(health, "2026-11-21", "2026-11-22"), cls=PlotlyJSONEncoder)
    assert '"id": "health-dlq"' in strip
    assert '"className": "health unavailable"' in strip
    assert "Traceback" not in strip
    assert '"5"' in strip


def test_a_dagster_that_never_answers_is_cut_off_at_the_deadline(lake: Lake) -> None:
    with socket.socket() as silent:  # accepts connections (the kernel's backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        health = Health(url, AwsSettings(aws_endpoint_url=url), lake, timeout=0.5, dagster_timeout=0.5)

        start = time.monotonic()
        items = by_key(health.items(DAY, DAY))

        assert time.monotonic() - start < 3
    assert items["gold"].text == "unavailable"
    assert items["dlq"].text == "unavailable"


@pytest.fixture
def dagster_url(tmp_path: Path) -> Iterator[tuple[str, DagsterInstance]]:
    """Dagster's webserver (its GraphQL API) over a temporary instance, on a free port, in a thread."""
    (tmp_path / "dagster").mkdir()
    instance = DagsterInstance.local_temp(str(tmp_path / "dagster"))
    defs = Path(__file__).with_name("dagster_defs.py")
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(python_file=str(defs), attribute="defs", working_directory=str(defs.parent)),
        location_name="health",
    )
    context = WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(origin))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(DagsterWebserver(context).create_asgi_app(), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the Dagster webserver did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", instance
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        context.__exit__(None, None, None)
        instance.dispose()


def test_layers_failed_checks_and_freshness_come_from_dagster(
    lake: Lake, dagster_url: tuple[str, DagsterInstance], settings: Settings
) -> None:
    url, instance = dagster_url
    for key in (["bronze", "purchases"], ["silver", "purchases"], ["gold", "sales_performance"]):
        instance.report_runless_asset_event(AssetMaterialization(asset_key=key, partition="2026-11-21-10:00"))

    def evaluate(key: list[str], check: str, passed: bool, description: str = "") -> None:
        instance.report_runless_asset_event(
            AssetCheckEvaluation(
                asset_key=AssetKey(key),
                check_name=check,
                passed=passed,
                severity=AssetCheckSeverity.WARN if check == "fresh_vs_silver" else AssetCheckSeverity.ERROR,
                description=description or None,
            )
        )

    evaluate(["gold", "sales_performance"], "revenue_matches_silver", False)
    evaluate(["gold", "sales_performance"], "fresh_vs_silver", True)
    evaluate(["gold", "items_category_performance"], "fresh_vs_silver", False, "items 3 h behind silver")
    aws = AwsClients(settings)
    dlq = aws.queue_url(settings.purchases_dlq)
    for n in range(2):
        aws.sqs.send_message(QueueUrl=dlq, MessageBody=f"poison {n}")
    health = Health(url, settings, lake, dagster_timeout=30)  # cut-offs are the tests above; a loaded machine

    items = by_key(health.items(DAY, DAY, now=datetime.now(UTC)))

    assert (items["bronze"].status, items["silver"].status, items["marts"].status) == ("ok", "ok", "ok")
    assert items["bronze"].text == "just now"
    assert items["bronze"].link.startswith(f"{url}/runs/")
    assert "gold/sales_performance" in items["marts"].detail
    assert (items["gold"].text, items["gold"].status) == ("never", "warn")  # sales_hourly never materialized
    assert items["failed-checks"].status == "bad"
    assert items["failed-checks"].text == "1: gold/sales_performance:revenue_matches_silver"
    assert items["freshness"].status == "bad"
    assert "items 3 h behind silver" in items["freshness"].detail
    assert (items["dlq"].text, items["dlq"].status) == ("2", "bad")
    assert items["quarantine"].text == "3"
