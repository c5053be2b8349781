"""The dashboard in a real browser: a small lake built by the real pipeline (DynamoDB on the moto
server → bronze → silver with PySpark → gold, star and marts with dbt, through ``materialize()``),
the dashboard served over it as ``make run`` serves it (``python -m cart_dashboard``), and
Debian's headless Chromium driven by Selenium. The figures shown must equal DuckDB queries over the
mart files to the cent, before and after switching to days and ticking a category; screenshots are
left in the test's folder (``CART_SCREENSHOT_TO=docs/images/dashboard.png`` also writes the
README's).

Chromium and its driver are system packages (``make browser`` installs them): without them this
test fails with the command that installs them, rather than being skipped where nobody looks."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
from pyspark.sql import SparkSession
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from cart_api.settings import Settings
from cart_aws.aws import AwsClients
from cart_dashboard.data import ITEMS, SALES, mart_location
from cart_dev.local_aws import answers, free_port, stop_process_group
from cart_dev.seed import put_purchases, stored_purchases
from cart_lakehouse.lake import Lake
from cart_lakehouse.local import local_resources
from cart_lakehouse.partitions import Hour
from tests.cart_lakehouse.pipeline import run
from tests.conftest import SPARK_SETTINGS

pytestmark = pytest.mark.e2e  # the pipeline and a browser: make test-quick leaves it out

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
INSTALL = "The browser test needs: sudo apt-get install -y chromium chromium-driver (make browser installs them)"
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
# two consecutive hours across a midnight: two days of marts from one run
LAST = Hour((NOW - timedelta(days=2)).replace(hour=0))
FIRST = Hour(LAST.start - timedelta(hours=1))
CENT = Decimal("0.01")
WAIT_SECONDS = 30


def start_chromium(chromium: str = CHROMIUM, chromedriver: str = CHROMEDRIVER) -> WebDriver:
    """Headless Chromium through its chromedriver, both at the paths Debian's packages install;
    the test fails with the install command when either is missing."""
    missing = [path for path in (chromium, chromedriver) if not os.access(path, os.X_OK)]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not found. {INSTALL}", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    # --no-sandbox: the suite may run as root, where Chromium's sandbox refuses to start
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,900"):
        options.add_argument(argument)
    # an explicit driver path: Selenium Manager never tries to download one (downloads are not reachable)
    return webdriver.Chrome(service=Service(chromedriver), options=options)


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    driver = start_chromium()
    try:
        yield driver
    finally:
        driver.quit()


@contextmanager
def serve(lake: Lake, settings: Settings, log: Path) -> Iterator[Callable[[], str]]:
    """``python -m cart_dashboard`` over ``lake`` on a free port, in its own process group, as make
    run starts it. Yields a function that waits until /healthz answers and returns the URL, so the
    dashboard can load while the test does something else. Dagster is not running: its health items
    say "unavailable"."""
    port = free_port()
    env = {
        **os.environ,
        "CART_LAKE_ROOT": lake.root,
        "CART_AWS_ENDPOINT_URL": settings.aws_endpoint_url or "",
        "CART_DAGSTER_UI_URL": f"http://127.0.0.1:{free_port()}",
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "cart_dashboard", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"

    def ready() -> str:
        deadline = time.monotonic() + 60
        while not answers(f"{url}/healthz"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the dashboard did not come up (exit {process.poll()}):\n{log.read_text()}")
            time.sleep(0.1)
        return url

    try:
        yield ready
    finally:
        stop_process_group(process)


def marts_sql(lake: Lake, query: str, **params: Any) -> list[tuple[Any, ...]]:
    """A query over the mart files themselves (DuckDB reading the Parquet), not the dashboard's code."""
    with duckdb.connect() as con:
        for name, model in (("sales", SALES), ("items", ITEMS)):
            files = f"{lake.root}/{mart_location(model)}/day=*/data.parquet"
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{files}')")
        return con.execute(query, params).fetchall()


def ticket(revenue: Decimal, purchases: int) -> str:
    return f"{(revenue / purchases).quantize(CENT, rounding=ROUND_HALF_UP):.2f}"


def shown(driver: WebDriver, element: str) -> str:
    return str(driver.find_element(By.ID, element).text)


def rows(driver: WebDriver, table: str, cell: str = "revenue") -> dict[str, str]:
    """A table's rows as data-key → the text of one cell, read in one script (a re-render between
    two element lookups would leave a stale reference)."""
    pairs = driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).map("
        "  r => [r.dataset.key, r.querySelector(arguments[1]).textContent])",
        f"#{table} tr[data-key]",
        f"td.{cell}",
    )
    return {str(key): str(text) for key, text in pairs}


def until(driver: WebDriver, what: str, check: Callable[[WebDriver], object]) -> None:
    """Wait for a condition on the page (no sleeps); on timeout, say what was awaited and what is shown."""
    try:
        WebDriverWait(
            driver, WAIT_SECONDS, poll_frequency=0.1, ignored_exceptions=[StaleElementReferenceException]
        ).until(check)
    except TimeoutException:
        kpis = {k: shown(driver, k) for k in ("kpi-revenue", "kpi-purchases", "kpi-average-ticket")}
        raise AssertionError(f"{what}: not within {WAIT_SECONDS} s; the page shows {kpis}") from None


def expect_kpis(driver: WebDriver, what: str, want: dict[str, str]) -> None:
    until(driver, f"{what}: {want}", lambda d: all(shown(d, k) == v for k, v in want.items()))


def screenshot(driver: WebDriver, path: Path, readme: bool = False) -> None:
    """The whole page, not just the window (Chromium's DevTools protocol); with ``readme``, also
    where CART_SCREENSHOT_TO says."""
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
    )
    path.write_bytes(base64.b64decode(shot["data"]))
    print(f"screenshot: {path}")
    if readme and (target := os.environ.get("CART_SCREENSHOT_TO")):
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        print(f"screenshot also written to {target}")


def test_the_dashboard_shows_the_marts_to_the_cent_and_follows_its_filters(
    settings: Settings, aws: AwsClients, spark: SparkSession, tmp_path: Path, browser: WebDriver
) -> None:
    started = time.monotonic()
    lake = Lake.open(str(tmp_path / "lake"))
    purchases = stored_purchases(FIRST.start, 60, seed=61) + stored_purchases(LAST.start, 40, seed=62)
    put_purchases(aws, settings.purchases_table, purchases)
    # served from an empty lake while the pipeline runs (it loads meanwhile); each page load reads the lake anew
    with serve(lake, settings, tmp_path / "dashboard.log") as ready:
        assert run(local_resources(settings, lake.root, SPARK_SETTINGS), FIRST, LAST).success
        built = time.monotonic()
        ((revenue, count),) = marts_sql(lake, "SELECT sum(revenue), sum(purchases) FROM sales WHERE grain = 'day'")
        assert count == len(purchases)  # the marts hold what was put in DynamoDB
        hour_buyers = marts_sql(lake, "SELECT sum(new_buyers), sum(returning_buyers) FROM sales WHERE grain = 'hour'")
        day_buyers = marts_sql(lake, "SELECT sum(new_buyers), sum(returning_buyers) FROM sales WHERE grain = 'day'")
        categories = dict(marts_sql(lake, "SELECT category, sum(revenue) FROM items GROUP BY category"))
        products = marts_sql(
            lake,
            "SELECT product_id, sum(revenue) AS r FROM items GROUP BY product_id ORDER BY r DESC, product_id LIMIT 10",
        )

        browser.get(ready())
        # (1) the default view: both days, hour grain, all categories
        expect_kpis(
            browser,
            "the default view",
            {
                "kpi-revenue": f"{revenue:.2f}",
                "kpi-purchases": str(count),
                "kpi-average-ticket": ticket(revenue, count),
                "kpi-new-buyers": str(hour_buyers[0][0]),
                "kpi-returning-buyers": str(hour_buyers[0][1]),
            },
        )
        until(browser, "the top tables", lambda d: len(rows(d, "top-products")) == len(products))
        assert rows(browser, "top-categories") == {c: f"{r:.2f}" for c, r in categories.items()}
        assert list(rows(browser, "top-products").items()) == [(p, f"{r:.2f}") for p, r in products]
        until(browser, "the health strip", lambda d: shown(d, "health-dlq") == "DLQ depth: 0")
        assert shown(browser, "health-bronze") == "bronze: unavailable"  # no Dagster in this test
        assert shown(browser, "health-quarantine") == "quarantined rows: 0"
        assert not browser.find_element(By.ID, "empty-state").is_displayed()
        screenshot(browser, tmp_path / "dashboard.png", readme=True)

        # (2) days, then one category: the figures follow and equal the filtered queries
        browser.find_element(By.CSS_SELECTOR, "#grain input[value=day]").click()
        until(browser, "the day grain", lambda d: shown(d, "buyers-grain") == "per day, summed")
        expect_kpis(
            browser,
            "the day grain",
            {"kpi-new-buyers": str(day_buyers[0][0]), "kpi-returning-buyers": str(day_buyers[0][1])},
        )
        chosen = max(categories, key=lambda c: categories[c])
        browser.find_element(By.CSS_SELECTOR, f"#category input[value={chosen}]").click()
        ((category_revenue, units),) = marts_sql(
            lake, "SELECT sum(revenue), sum(units) FROM items WHERE category = $category", category=chosen
        )
        expect_kpis(
            browser,
            f"category {chosen}",
            {
                "kpi-revenue": f"{category_revenue:.2f}",
                "kpi-purchases": str(units),
                "kpi-average-ticket": ticket(category_revenue, units),
            },
        )
        until(browser, "the category's tables", lambda d: set(rows(d, "top-categories")) == {chosen})
        assert rows(browser, "top-categories") == {chosen: f"{category_revenue:.2f}"}
        assert set(rows(browser, "top-products", cell="category").values()) == {chosen}
        screenshot(browser, tmp_path / "dashboard-filtered.png")
    print(f"pipeline {built - started:.1f} s, browser part {time.monotonic() - built:.1f} s")


def test_without_chromium_the_test_fails_with_the_install_command() -> None:
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y chromium chromium-driver"):
        start_chromium(chromium="/nonexistent/chromium")
