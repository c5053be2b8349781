"""``cart-traffic``: send realistic purchases to the API, seeded, with a share of invalid ones.

Buyers follow a Zipf-like popularity (a few buy a lot), products likewise, amounts are
log-normal around a typical ticket and most purchases are paid in one to three installments.
Invalid requests cover each way a client gets a purchase wrong, so the summary shows the API's
rejections by reason next to its throughput and latency.

What the API accepted is stored later, by the worker: with ``queue`` settings the run samples the
purchases queue's depth (visible + in flight) and the DLQ's every second (shown on the progress
bar), and with ``wait_stored`` it then waits for the backlog, so the summary says how deep the
queue got and how far behind the API the worker was (the worker lag: the time from the last
202 until that purchase could be read back from the API).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from botocore.exceptions import BotoCoreError, ClientError
from tqdm import tqdm

from cart_aws.aws import AwsClients
from cart_aws.settings import AwsSettings

PRODUCT_IDS = [f"P{n:04d}" for n in range(1, 201)]
BUYER_IDS = [f"B{n:06d}" for n in range(1, 5001)]
INSTALLMENTS = [1, 1, 1, 1, 2, 2, 3, 3, 4, 6, 10, 12]

INVALID_KINDS = (
    "missing_field",
    "wrong_type",
    "negative_amount",
    "zero_amount",
    "installments_zero",
    "installments_too_many",
    "future_date",
    "unknown_field",
    "malformed_json",
)


@dataclass(frozen=True)
class PlannedRequest:
    """One request to send: a JSON body (or raw bytes for malformed JSON) and what it is."""

    kind: str  # "valid" or one of INVALID_KINDS
    body: bytes


@dataclass
class TrafficConfig:
    url: str
    api_key: str = "local-dev-key"
    count: int = 200
    rate: float | None = None  # requests per second in all; None: as fast as concurrency allows
    concurrency: int = 16
    invalid_share: float = 0.0
    seed: int = 42
    timeout: float = 10.0
    progress: bool = True
    queue: AwsSettings | None = None  # where the purchases queue is: its depth is sampled (None: not watched)
    wait_stored: float = 0.0  # seconds to wait after sending for the backlog to be stored (0: no wait)
    sample_seconds: float = 1.0  # how often the queue depth is sampled


@dataclass(frozen=True)
class QueueSample:
    at_s: float  # seconds since the run started
    depth: int  # purchases queue, visible + in flight
    dlq: int


@dataclass
class TrafficReport:
    sent: int = 0
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)  # "422 number_of_installments", ...
    errors: Counter[str] = field(default_factory=Counter)  # transport errors by exception name
    by_kind: Counter[tuple[str, int]] = field(default_factory=Counter)  # (planned kind, status)
    elapsed_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    accepted_ids: list[str] = field(default_factory=list)
    last_accepted_s: float | None = None  # when the last 202 arrived, seconds since the start
    queue_samples: list[QueueSample] = field(default_factory=list)
    queue_error: str | None = None  # why the queue could not be read, if it could not
    waited_s: float | None = None  # how long the run waited for the backlog after sending (None: it did not)
    worker_lag_s: float | None = None  # from the last 202 until that purchase was stored (None: not seen stored)
    drained_s: float | None = None  # from the last 202 until the queue was first seen empty (None: not seen)

    @property
    def max_queue_depth(self) -> int | None:
        return max((s.depth for s in self.queue_samples), default=None)

    @property
    def last_queue_sample(self) -> QueueSample | None:
        return self.queue_samples[-1] if self.queue_samples else None

    @property
    def requests_per_s(self) -> float:
        return self.sent / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def accepted_per_s(self) -> float:
        return self.accepted / self.elapsed_s if self.elapsed_s else 0.0

    def percentile_ms(self, q: float) -> float:
        if not self.latencies_ms:
            return 0.0
        if len(self.latencies_ms) == 1:
            return self.latencies_ms[0]
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[round(q * 100) - 1]

    @property
    def p50_ms(self) -> float:
        return self.percentile_ms(0.50)

    @property
    def p99_ms(self) -> float:
        return self.percentile_ms(0.99)

    @property
    def misjudged(self) -> int:
        """Requests the API judged against their plan: valid ones not accepted, invalid ones accepted."""
        return sum(
            n
            for (kind, status), n in self.by_kind.items()
            if (kind == "valid") != (status == 202) and status not in (429, 503)
        )

    def summary(self) -> str:
        lines = [
            f"sent {self.sent} in {self.elapsed_s:.2f} s: {self.requests_per_s:.0f} requests/s, "
            f"{self.accepted_per_s:.0f} accepted/s, latency p50 {self.p50_ms:.1f} ms p99 {self.p99_ms:.1f} ms",
            f"  accepted  {self.accepted}",
        ]
        rejected = sum(self.rejected.values())
        lines.append(f"  rejected  {rejected}")
        lines.extend(f"    {n:>6}  {reason}" for reason, n in self.rejected.most_common())
        if self.errors:
            lines.append(f"  errors    {sum(self.errors.values())}")
            lines.extend(f"    {n:>6}  {name}" for name, n in self.errors.most_common())
        lines.extend(self.backlog_lines())
        return "\n".join(lines)

    def backlog_lines(self) -> list[str]:
        """What the queue and the worker did with the accepted purchases, as far as the run saw."""
        lines = []
        last = self.last_queue_sample
        if self.queue_error:
            lines.append(f"  queue     depth unknown: {self.queue_error}")
        elif last is not None:
            drained = "" if self.drained_s is None else f", empty {self.drained_s:.1f} s after the last 202"
            lines.append(
                f"  queue     depth {last.depth} at the end (max {self.max_queue_depth}{drained}), DLQ {last.dlq}"
            )
        if self.waited_s is None or not self.accepted:
            return lines
        if self.worker_lag_s is not None:
            lines.append(
                f"  worker    lag {self.worker_lag_s:.1f} s (from the last 202 until that purchase was stored)"
            )
        else:
            lines.append(
                f"  worker    behind: the last accepted purchase was not stored within {self.waited_s:g} s "
                "of its 202 (is the worker running? make run logs it in .local/logs/worker.log)"
            )
        return lines


def _zipf_weights(n: int, s: float = 1.1) -> list[float]:
    return [1.0 / (rank**s) for rank in range(1, n + 1)]


def _valid(rng: random.Random, today: date, buyer_weights: list[float], product_weights: list[float]) -> dict[str, Any]:
    amount = min(round(rng.lognormvariate(4.3, 0.9), 2), 999_999.99)
    return {
        "buyer_id": rng.choices(BUYER_IDS, buyer_weights)[0],
        "product_id": rng.choices(PRODUCT_IDS, product_weights)[0],
        "number_of_installments": rng.choice(INSTALLMENTS),
        "total_amount": max(amount, 0.01),
        "purchase_date": (today - timedelta(days=rng.choice([0, 0, 0, 0, 1, 2]))).isoformat(),
    }


def _spoil(kind: str, purchase: dict[str, Any], rng: random.Random, today: date) -> bytes:
    broken = dict(purchase)
    if kind == "missing_field":
        del broken[rng.choice(sorted(broken))]
    elif kind == "wrong_type":
        broken["number_of_installments"] = "three"
    elif kind == "negative_amount":
        broken["total_amount"] = -abs(broken["total_amount"])
    elif kind == "zero_amount":
        broken["total_amount"] = 0
    elif kind == "installments_zero":
        broken["number_of_installments"] = 0
    elif kind == "installments_too_many":
        broken["number_of_installments"] = 100
    elif kind == "future_date":
        broken["purchase_date"] = (today + timedelta(days=rng.randint(30, 400))).isoformat()
    elif kind == "unknown_field":
        broken["coupon"] = "FREE"
    elif kind == "malformed_json":
        return json.dumps(broken).encode()[:-7]
    else:
        raise ValueError(f"unknown invalid kind {kind!r}; expected one of {', '.join(INVALID_KINDS)}")
    return json.dumps(broken).encode()


def generate_requests(
    seed: int, count: int, invalid_share: float = 0.0, today: date | None = None
) -> list[PlannedRequest]:
    """The same seed gives the same requests: purchases for today and the last two days."""
    if not 0.0 <= invalid_share <= 1.0:
        raise ValueError(f"invalid_share must be between 0 and 1, got {invalid_share}")
    rng = random.Random(seed)
    today = today or datetime.now(UTC).date()
    buyer_weights = _zipf_weights(len(BUYER_IDS))
    product_weights = _zipf_weights(len(PRODUCT_IDS), 0.8)
    planned = []
    for _ in range(count):
        purchase = _valid(rng, today, buyer_weights, product_weights)
        if rng.random() < invalid_share:
            kind = rng.choice(INVALID_KINDS)
            planned.append(PlannedRequest(kind, _spoil(kind, purchase, rng, today)))
        else:
            planned.append(PlannedRequest("valid", json.dumps(purchase).encode()))
    return planned


def _rejection_reason(response: httpx.Response) -> str:
    """``"422 total_amount"``: the status and the first field the problem names, if any."""
    try:
        problem = response.json()
    except ValueError:
        return str(response.status_code)
    errors = problem.get("errors") if isinstance(problem, dict) else None
    if errors and isinstance(errors, list):
        fields = sorted({str(e.get("field", "?")) for e in errors if isinstance(e, dict)})
        return f"{response.status_code} {', '.join(fields)}"
    title = problem.get("title") if isinstance(problem, dict) else None
    return f"{response.status_code} {title}" if title else str(response.status_code)


def _schedule(count: int, rate: float | None) -> Iterator[float]:
    """Offsets (seconds from the start) at which each request may go."""
    for i in range(count):
        yield i / rate if rate else 0.0


class QueueProbe:
    """The purchases queue's and the DLQ's depth (visible + in flight), read with few retries so a
    queue that cannot be reached is reported at once rather than after boto3's backoff."""

    def __init__(self, settings: AwsSettings) -> None:
        self.aws = AwsClients(settings, attempts=2, read_timeout=5)
        self.queue, self.dlq = settings.purchases_queue, settings.purchases_dlq

    def depths(self) -> tuple[int, int]:
        return self.aws.queue_depth(self.queue), self.aws.queue_depth(self.dlq)


def _describe_error(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return f"{err.get('Code')}: {err.get('Message')}"
    return f"{type(exc).__name__}: {exc}"


async def _sample_queue(probe: QueueProbe, report: TrafficReport, start: float, bar: tqdm[Any]) -> bool:
    """One sample of the queue into the report (and the progress bar); False if it cannot be read."""
    try:
        depth, dlq = await asyncio.to_thread(probe.depths)
    except (BotoCoreError, ClientError) as exc:
        report.queue_error = _describe_error(exc)
        return False
    report.queue_samples.append(QueueSample(time.perf_counter() - start, depth, dlq))
    bar.set_postfix({"queue": depth, "DLQ": dlq})  # a dict keeps this order (keywords are sorted)
    return True


async def _wait_for_backlog(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    config: TrafficConfig,
    report: TrafficReport,
    probe: QueueProbe | None,
    start: float,
    bar: tqdm[Any],
) -> None:
    """After sending: poll until the last accepted purchase reads back from the API (stored) and,
    when the queue is watched, the queue is empty, or until ``wait_stored`` seconds after the last
    202. Records the worker lag and when the queue was first seen empty."""
    last_id, accepted_at = report.accepted_ids[-1], report.last_accepted_s or 0.0
    deadline = start + accepted_at + config.wait_stored
    report.waited_s = config.wait_stored
    watching = probe is not None and report.queue_error is None
    while True:
        now = time.perf_counter()
        if report.worker_lag_s is None:
            try:
                found = await client.get(f"/purchases/{last_id}", headers=headers)
            except httpx.HTTPError:
                found = None
            if found is not None and found.status_code == 200:
                report.worker_lag_s = max(0.0, now - start - accepted_at)
        if watching and report.drained_s is None:
            assert probe is not None
            watching = await _sample_queue(probe, report, start, bar)
            sample = report.last_queue_sample
            if watching and sample is not None and sample.depth == 0:
                report.drained_s = max(0.0, sample.at_s - accepted_at)
        if report.worker_lag_s is not None and (not watching or report.drained_s is not None):
            return
        if time.perf_counter() >= deadline:
            return
        await asyncio.sleep(0.1)  # the interval between looks; the deadline above bounds the wait


async def run_traffic(config: TrafficConfig) -> TrafficReport:
    """Send the planned requests with at most ``concurrency`` in flight, paced to ``rate``; with
    ``queue`` settings, sample the queue meanwhile, and with ``wait_stored``, wait for the backlog."""
    if config.concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    if config.rate is not None and config.rate <= 0:
        raise ValueError("rate must be positive (or None for as fast as possible)")
    if config.wait_stored < 0 or config.sample_seconds <= 0:
        raise ValueError("wait_stored must be 0 or more and sample_seconds positive")
    planned = generate_requests(config.seed, config.count, config.invalid_share)
    report = TrafficReport()
    queue: asyncio.Queue[tuple[PlannedRequest, float]] = asyncio.Queue()
    for request, offset in zip(planned, _schedule(config.count, config.rate), strict=True):
        queue.put_nowait((request, offset))
    headers = {"X-API-Key": config.api_key, "Content-Type": "application/json"}
    bar = tqdm(total=config.count, unit="req", desc="purchases", disable=not config.progress, file=sys.stderr)
    limits = httpx.Limits(max_connections=config.concurrency, max_keepalive_connections=config.concurrency)
    probe = QueueProbe(config.queue) if config.queue is not None else None
    sending_done = asyncio.Event()
    start = time.perf_counter()

    async def watch_queue() -> None:
        assert probe is not None
        while await _sample_queue(probe, report, start, bar):
            try:
                await asyncio.wait_for(sending_done.wait(), config.sample_seconds)
            except TimeoutError:
                continue
            return

    async with httpx.AsyncClient(base_url=config.url, timeout=config.timeout, limits=limits) as client:

        async def sender() -> None:
            while True:
                try:
                    request, offset = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                wait = start + offset - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
                began = time.perf_counter()
                try:
                    response = await client.post("/purchases", content=request.body, headers=headers)
                except httpx.HTTPError as exc:
                    report.errors[type(exc).__name__] += 1
                    report.by_kind[(request.kind, 0)] += 1
                else:
                    report.latencies_ms.append((time.perf_counter() - began) * 1000)
                    report.by_kind[(request.kind, response.status_code)] += 1
                    if response.status_code == 202:
                        report.accepted += 1
                        report.accepted_ids.append(response.json()["purchase_id"])
                        report.last_accepted_s = time.perf_counter() - start
                    else:
                        report.rejected[_rejection_reason(response)] += 1
                report.sent += 1
                bar.update()

        watcher = asyncio.create_task(watch_queue()) if probe is not None else None
        await asyncio.gather(*(sender() for _ in range(min(config.concurrency, max(config.count, 1)))))
        report.elapsed_s = time.perf_counter() - start
        sending_done.set()
        if watcher is not None:
            await watcher
        if config.wait_stored > 0 and report.accepted_ids:
            bar.set_description("waiting for the worker")
            await _wait_for_backlog(client, headers, config, report, probe, start, bar)
        elif probe is not None and report.queue_error is None:
            await _sample_queue(probe, report, start, bar)  # the depth as sending ended
    bar.close()
    return report


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cart-traffic",
        description="Send realistic, seeded purchases to the cart API and summarise what it answered.",
    )
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="API base URL (default %(default)s)")
    parser.add_argument("--api-key", default="local-dev-key", help="X-API-Key to send (default: the local key)")
    parser.add_argument("--count", "-n", type=int, default=200, help="requests to send (default %(default)s)")
    parser.add_argument("--rate", type=float, default=None, help="requests per second in all (default: unpaced)")
    parser.add_argument("--concurrency", "-c", type=int, default=16, help="requests in flight (default %(default)s)")
    parser.add_argument(
        "--invalid-share", type=float, default=0.0, help="share of deliberately invalid requests, 0..1 (default 0)"
    )
    parser.add_argument("--seed", type=int, default=42, help="random seed (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=10.0, help="per-request timeout in seconds")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--no-queue",
        action="store_true",
        help="do not read the purchases queue's depth (by default sampled every second from the queue that the "
        "CART_* settings name: the local moto server unless CART_AWS_ENDPOINT_URL says otherwise)",
    )
    parser.add_argument(
        "--wait-stored",
        type=float,
        default=60.0,
        help="after sending, wait up to this many seconds for the worker to store the backlog, to report the "
        "worker lag (default %(default)s; 0: do not wait)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    try:
        report = asyncio.run(
            run_traffic(
                TrafficConfig(
                    url=args.url,
                    api_key=args.api_key,
                    count=args.count,
                    rate=args.rate,
                    concurrency=args.concurrency,
                    invalid_share=args.invalid_share,
                    seed=args.seed,
                    timeout=args.timeout,
                    progress=not args.no_progress,
                    queue=None if args.no_queue else AwsSettings(),
                    wait_stored=args.wait_stored,
                )
            )
        )
    except ValueError as exc:
        parser.error(str(exc))
    if args.json:
        print(
            json.dumps(
                {
                    "sent": report.sent,
                    "accepted": report.accepted,
                    "rejected": dict(report.rejected),
                    "errors": dict(report.errors),
                    "elapsed_s": round(report.elapsed_s, 3),
                    "requests_per_s": round(report.requests_per_s, 1),
                    "p50_ms": round(report.p50_ms, 2),
                    "p99_ms": round(report.p99_ms, 2),
                    "queue_depth_max": report.max_queue_depth,
                    "queue_depth_end": None if (last := report.last_queue_sample) is None else last.depth,
                    "dlq_depth_end": None if last is None else last.dlq,
                    "queue_error": report.queue_error,
                    "queue_drained_after_last_accepted_s": _rounded(report.drained_s),
                    "worker_lag_s": _rounded(report.worker_lag_s),
                },
                indent=2,
            )
        )
    else:
        print(report.summary())
    if report.errors and report.errors.total() == report.sent:
        print(f"error: no request reached {args.url}; is the API running (make run)?", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
