"""``cart-traffic``: send realistic purchases to the API, seeded, with a share of invalid ones.

Buyers follow a Zipf-like popularity (a few buy a lot), products likewise, amounts are
log-normal around a typical ticket and most purchases are paid in one to three installments.
Invalid requests cover each way a client gets a purchase wrong, so the summary shows the API's
rejections by reason next to its throughput and latency.
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
from tqdm import tqdm

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
        return "\n".join(lines)


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


async def run_traffic(config: TrafficConfig) -> TrafficReport:
    """Send the planned requests with at most ``concurrency`` in flight, paced to ``rate``."""
    if config.concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    if config.rate is not None and config.rate <= 0:
        raise ValueError("rate must be positive (or None for as fast as possible)")
    planned = generate_requests(config.seed, config.count, config.invalid_share)
    report = TrafficReport()
    queue: asyncio.Queue[tuple[PlannedRequest, float]] = asyncio.Queue()
    for request, offset in zip(planned, _schedule(config.count, config.rate), strict=True):
        queue.put_nowait((request, offset))
    headers = {"X-API-Key": config.api_key, "Content-Type": "application/json"}
    bar = tqdm(total=config.count, unit="req", desc="purchases", disable=not config.progress, file=sys.stderr)
    limits = httpx.Limits(max_connections=config.concurrency, max_keepalive_connections=config.concurrency)
    start = time.perf_counter()

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
                    else:
                        report.rejected[_rejection_reason(response)] += 1
                report.sent += 1
                bar.update()

        await asyncio.gather(*(sender() for _ in range(min(config.concurrency, max(config.count, 1)))))
    report.elapsed_s = time.perf_counter() - start
    bar.close()
    return report


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
