"""The dashboard's health strip: is the platform behind the figures working?

Seven items, each from its own source, asked in parallel with short timeouts so the page stays fast:

- the last successful materialization of each layer (bronze, silver, gold, marts) and the checks
  whose latest execution failed, from Dagster's GraphQL API at ``CART_DAGSTER_UI_URL``;
- the marts' freshness: the latest evaluation of their ``fresh_vs_silver`` check (Dagster too);
- rows quarantined by silver in the page's date range (``silver/purchases_quarantine`` in the lake,
  counted from the Parquet footers);
- the depth of the purchases DLQ (SQS ``GetQueueAttributes``).

A source that is down or does not answer in time makes its items say "unavailable" with the reason
in a line, never a trace: the figures of the page do not depend on them.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from cart_aws.settings import AwsSettings
from cart_lakehouse.lake import Lake
from cart_lakehouse.layout import SILVER_QUARANTINE

if TYPE_CHECKING:
    from cart_aws.aws import AwsClients

log = logging.getLogger(__name__)

Status = Literal["ok", "warn", "bad", "unavailable"]
LAYERS = {"bronze": ("bronze",), "silver": ("silver", "star"), "gold": ("gold",), "marts": ("marts",)}
MARTS = (("gold", "sales_performance"), ("gold", "items_category_performance"))
FRESHNESS_CHECK = "fresh_vs_silver"  # cart_lakehouse.checks.freshness.CHECK_NAME (that module imports dagster)
TIMEOUT_SECONDS = 2.0  # SQS and the lake
DAGSTER_TIMEOUT_SECONDS = 4.0  # its GraphQL reads every check's latest execution: slower when cold
FAILED = ("FAILED", "EXECUTION_FAILED")

HEALTH_QUERY = """
query DashboardHealth {
  assetNodes {
    assetKey { path }
    groupName
    assetMaterializations(limit: 1) { timestamp runId }
    assetChecksOrError {
      __typename
      ... on AssetChecks { checks { name executionForLatestMaterialization { status runId } } }
    }
  }
}
"""
FRESHNESS_QUERY = (
    "query MartFreshness {\n"
    + "\n".join(
        f'  m{i}: assetCheckExecutions(assetKey: {{path: {json.dumps(list(key))}}}, checkName: "{FRESHNESS_CHECK}", '
        "limit: 1) { status timestamp evaluation { success description } }"
        for i, key in enumerate(MARTS)
    )
    + "\n}"
)


@dataclass(frozen=True)
class Item:
    """One item of the strip: ``key`` is its element id's suffix (``health-<key>``)."""

    key: str
    label: str
    text: str
    status: Status
    detail: str = ""  # shown on hover: the reason, the check names, the run
    link: str | None = None


class Unavailable(RuntimeError):
    """A source of the strip is down or did not answer; the message says which and why, in a line."""


def graphql(url: str, query: str, timeout: float) -> dict[str, Any]:
    """POST a query to ``<url>/graphql`` and return its ``data``; Unavailable if that fails."""
    request = urllib.request.Request(
        f"{url}/graphql", data=json.dumps({"query": query}).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            body = json.load(answer)
    except urllib.error.HTTPError as exc:
        raise Unavailable(f"Dagster at {url} answered HTTP {exc.code}") from exc
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Unavailable(f"Dagster not reachable at {url} ({reason})") from exc
    if not isinstance(body, dict) or body.get("errors") or not isinstance(body.get("data"), dict):
        errors = body.get("errors") if isinstance(body, dict) else body
        raise Unavailable(f"Dagster at {url} refused the query: {str(errors)[:200]}")
    data: dict[str, Any] = body["data"]
    return data


def _ago(when: datetime, now: datetime) -> str:
    minutes = int((now - when).total_seconds() // 60)
    if minutes < 1:
        return "just now"
    if minutes < 120:
        return f"{minutes} min ago"
    if minutes < 48 * 60:
        return f"{minutes // 60} h ago"
    return f"{minutes // (24 * 60)} days ago"


def dagster_items(url: str, now: datetime, timeout: float = DAGSTER_TIMEOUT_SECONDS) -> list[Item]:
    """The layers' last materializations and the failed checks (one GraphQL query)."""
    nodes = graphql(url, HEALTH_QUERY, timeout).get("assetNodes") or []
    latest: dict[str, tuple[datetime, str, str]] = {}
    failed: list[str] = []
    for node in nodes:
        key = "/".join(node["assetKey"]["path"])
        for event in node.get("assetMaterializations") or []:
            when = datetime.fromtimestamp(int(event["timestamp"]) / 1000, UTC)
            for layer, groups in LAYERS.items():
                if node.get("groupName") in groups and (layer not in latest or when > latest[layer][0]):
                    latest[layer] = (when, event["runId"], key)
        checks = node.get("assetChecksOrError") or {}
        for check in checks.get("checks") or []:
            execution = check.get("executionForLatestMaterialization") or {}
            if execution.get("status") in FAILED and check["name"] != FRESHNESS_CHECK:  # that has its own item
                failed.append(f"{key}:{check['name']}")
    items = []
    for layer in LAYERS:
        if layer not in latest:
            items.append(Item(layer, layer, "never", "warn", f"no asset of the {layer} layer has been materialized"))
            continue
        when, run_id, key = latest[layer]
        items.append(
            Item(layer, layer, _ago(when, now), "ok", f"{key} at {when:%Y-%m-%d %H:%M} UTC", f"{url}/runs/{run_id}")
        )
    if failed:
        shown = ", ".join(sorted(failed)[:3]) + (f" and {len(failed) - 3} more" if len(failed) > 3 else "")
        items.append(Item("failed-checks", "failed checks", f"{len(failed)}: {shown}", "bad", "\n".join(failed)))
    else:
        items.append(Item("failed-checks", "failed checks", "none", "ok"))
    return items


def freshness_item(url: str, timeout: float = DAGSTER_TIMEOUT_SECONDS) -> Item:
    """The marts' latest ``fresh_vs_silver`` evaluations: fresh, stale (with the check's reason) or never run."""
    data = graphql(url, FRESHNESS_QUERY, timeout)
    stale, unknown = [], []
    for i, key in enumerate(MARTS):
        executions = data.get(f"m{i}") or []
        evaluation = (executions[0].get("evaluation") if executions else None) or {}
        if not evaluation:
            unknown.append(key[-1])
        elif not evaluation.get("success"):
            stale.append(evaluation.get("description") or f"{key[-1]} is behind silver")
    if stale:
        return Item("freshness", "freshness", f"{len(stale)} mart(s) stale", "bad", "\n".join(stale))
    if unknown:
        return Item(
            "freshness", "freshness", "not evaluated yet", "warn", f"no evaluation yet for {', '.join(unknown)}"
        )
    return Item("freshness", "freshness", "marts fresh", "ok", "every mart within the limit behind silver")


def _quarantine_day(path: str) -> date | None:
    """The day of a quarantine file from its ``year=/month=/day=`` folders."""
    parts = dict(p.split("=", 1) for p in path.split("/") if "=" in p)
    try:
        return date(int(parts["year"]), int(parts["month"]), int(parts["day"]))
    except (KeyError, ValueError):
        return None


class QuarantineCounter:
    """Rows quarantined by silver per day range, from the files' footers (kept while a file is unchanged)."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self._rows: dict[str, tuple[tuple[int, int], int]] = {}
        self._lock = threading.Lock()

    def count(self, start: date, end: date) -> int:
        selector = pafs.FileSelector(self.lake.path(SILVER_QUARANTINE), recursive=True, allow_not_found=True)
        total = 0
        for info in self.lake.fs.get_file_info(selector):
            day = _quarantine_day(info.path)
            if info.type != pafs.FileType.File or not info.path.endswith(".parquet") or day is None:
                continue
            if not start <= day <= end:
                continue
            stamp = (int(info.mtime_ns or 0), int(info.size or 0))
            with self._lock:
                cached = self._rows.get(info.path)
            if cached is None or cached[0] != stamp:
                with self.lake.fs.open_input_file(info.path) as source:
                    cached = (stamp, pq.ParquetFile(source).metadata.num_rows)
                with self._lock:
                    self._rows[info.path] = cached
            total += cached[1]
        return total


def quarantine_item(counter: QuarantineCounter, start: date | None, end: date | None) -> Item:
    if start is None or end is None:
        return Item("quarantine", "quarantined rows", "–", "ok", "no date range chosen")
    try:
        rows = counter.count(start, end)
    except OSError as exc:
        raise Unavailable(f"the lake could not be read ({exc})") from exc
    detail = f"bronze rows silver set aside from {start} to {end} (silver/purchases_quarantine, with the reason)"
    return Item("quarantine", "quarantined rows", str(rows), "warn" if rows else "ok", detail)


def dlq_item(aws: AwsClients) -> Item:
    from botocore.exceptions import BotoCoreError, ClientError

    queue = aws.settings.purchases_dlq
    try:
        depth = aws.queue_depth(queue)
    except (BotoCoreError, ClientError) as exc:
        raise Unavailable(f"SQS did not answer for {queue} ({exc})") from exc
    detail = f"messages waiting in {queue}; the DLQ sensor redrives or quarantines them"
    return Item("dlq", "DLQ depth", str(depth), "bad" if depth else "ok", detail)


ITEMS = (
    ("bronze", "bronze"),
    ("silver", "silver"),
    ("gold", "gold"),
    ("marts", "marts"),
    ("freshness", "freshness"),
    ("quarantine", "quarantined rows"),
    ("dlq", "DLQ depth"),
    ("failed-checks", "failed checks"),
)


class Health:
    """The strip's sources for one system, asked in parallel with a deadline."""

    def __init__(
        self,
        dagster_url: str,
        aws: AwsSettings,
        lake: Lake,
        timeout: float = TIMEOUT_SECONDS,
        dagster_timeout: float = DAGSTER_TIMEOUT_SECONDS,
    ) -> None:
        self.dagster_url = dagster_url.rstrip("/")
        self.timeout = timeout
        self.dagster_timeout = dagster_timeout
        self.aws_settings = aws
        self.quarantine = QuarantineCounter(lake)
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="health")

    @cached_property
    def aws(self) -> AwsClients:
        """Built at the first question (boto3 takes a second to import: not while the page starts);
        one attempt, short timeouts: a down SQS must not hold the strip for boto3's retries."""
        from cart_aws.aws import AwsClients

        return AwsClients(self.aws_settings, attempts=1, read_timeout=self.timeout, connect_timeout=self.timeout)

    def items(self, start: date | None, end: date | None, now: datetime | None = None) -> list[Item]:
        """Every item of the strip, in ``ITEMS``' order; a source that fails gives "unavailable" items."""
        now = now or datetime.now(UTC)
        sources: list[tuple[tuple[str, ...], Callable[[], list[Item]]]] = [
            (
                ("bronze", "silver", "gold", "marts", "failed-checks"),
                lambda: dagster_items(self.dagster_url, now, self.dagster_timeout),
            ),
            (("freshness",), lambda: [freshness_item(self.dagster_url, self.dagster_timeout)]),
            (("quarantine",), lambda: [quarantine_item(self.quarantine, start, end)]),
            (("dlq",), lambda: [dlq_item(self.aws)]),
        ]
        futures: list[tuple[Sequence[str], Future[list[Item]]]] = [
            (keys, self._pool.submit(source)) for keys, source in sources
        ]
        found: dict[str, Item] = {}
        labels = dict(ITEMS)
        deadline = time.monotonic() + max(self.timeout, self.dagster_timeout) + 1.0
        for keys, future in futures:
            try:
                for item in future.result(timeout=max(deadline - time.monotonic(), 0.0)):
                    found[item.key] = item
            except FutureTimeout:
                reason = f"no answer within {max(self.timeout, self.dagster_timeout) + 1.0:g} s"
                found.update({k: Item(k, labels[k], "unavailable", "unavailable", reason) for k in keys})
            except Unavailable as exc:
                found.update({k: Item(k, labels[k], "unavailable", "unavailable", str(exc)) for k in keys})
            except Exception as exc:  # a surprise in one source must not take the page down; logged in full
                log.exception("health source failed")
                reason = f"{type(exc).__name__}: {exc}"[:300]
                found.update({k: Item(k, labels[k], "unavailable", "unavailable", reason) for k in keys})
        return [found[key] for key, _ in ITEMS]
