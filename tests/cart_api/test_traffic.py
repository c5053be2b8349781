"""The traffic generator: seeded plans, and a real run against the API on a socket."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from datetime import date

import httpx
import pytest

from cart_api.app import create_app
from cart_api.models import PurchaseRequest
from cart_api.runner import QueueRunner
from cart_api.settings import Settings
from cart_api.traffic import INVALID_KINDS, TrafficConfig, generate_requests, main, run_traffic
from cart_aws.aws import AwsClients
from cart_aws.settings import AwsSettings
from cart_dev.harness import worker_running
from cart_dev.local_api import ApiServer
from tests.conftest import API_KEY


@pytest.fixture
def live_api(settings: Settings) -> Iterator[ApiServer]:
    with ApiServer(create_app(settings)) as server:
        yield server


def test_the_same_seed_plans_the_same_requests() -> None:
    today = date(2026, 3, 1)
    assert generate_requests(7, 50, 0.2, today) == generate_requests(7, 50, 0.2, today)
    assert generate_requests(7, 50, 0.2, today) != generate_requests(8, 50, 0.2, today)


def test_valid_plans_satisfy_the_contract_and_invalid_ones_do_not() -> None:
    today = date.today()
    planned = generate_requests(3, 600, invalid_share=0.5, today=today)
    kinds = Counter(p.kind for p in planned)
    assert 200 < kinds["valid"] < 400
    assert set(kinds) == {"valid", *INVALID_KINDS}  # every way of getting it wrong shows up
    for request in planned:
        try:
            PurchaseRequest.model_validate_json(request.body)
        except ValueError:
            assert request.kind != "valid", request
        else:
            assert request.kind == "valid", request


def test_purchases_look_like_a_shop() -> None:
    bodies = [json.loads(p.body) for p in generate_requests(1, 2000)]
    buyers = Counter(b["buyer_id"] for b in bodies)
    # Zipf-like: the most frequent buyer buys far more than a typical one
    assert buyers.most_common(1)[0][1] > 20 * (2000 / len(buyers))
    assert sum(b["number_of_installments"] == 1 for b in bodies) > len(bodies) / 4
    assert all(0 < b["total_amount"] < 1_000_000 for b in bodies)


def test_a_run_against_the_api_counts_accepted_and_rejections_by_reason(
    live_api: ApiServer, settings: Settings, aws: AwsClients
) -> None:
    config = TrafficConfig(live_api.url, api_key=API_KEY, count=120, concurrency=8, invalid_share=0.25, seed=5)
    report = asyncio.run(run_traffic(config))
    planned = Counter(p.kind for p in generate_requests(5, 120, 0.25))

    assert report.sent == 120
    assert report.accepted == planned["valid"]
    assert sum(report.rejected.values()) == 120 - planned["valid"]
    assert report.misjudged == 0
    assert not report.errors
    assert len(set(report.accepted_ids)) == report.accepted
    assert any(reason.startswith("422 ") for reason in report.rejected)
    # each spoilt request is rejected for its own reason
    assert report.rejected["400 body"] == planned["malformed_json"] > 0
    assert report.rejected["422 coupon"] == planned["unknown_field"] > 0
    assert report.rejected["422 purchase_date"] >= planned["future_date"] > 0
    assert report.rejected["422 total_amount"] >= planned["negative_amount"] + planned["zero_amount"] > 0
    assert 0 < report.p50_ms <= report.p99_ms
    assert "accepted" in report.summary()
    assert "p99" in report.summary()

    assert QueueRunner(settings, aws, wait_seconds=0).drain().stored == report.accepted


def test_a_wrong_key_is_reported_as_rejections(live_api: ApiServer) -> None:
    report = asyncio.run(run_traffic(TrafficConfig(live_api.url, api_key="nope", count=5, progress=False)))
    assert report.accepted == 0
    assert sum(report.rejected.values()) == 5
    assert all(reason.startswith("401") for reason in report.rejected), report.rejected


def test_rate_paces_the_requests(live_api: ApiServer) -> None:
    report = asyncio.run(
        run_traffic(TrafficConfig(live_api.url, api_key=API_KEY, count=11, rate=50, concurrency=4, progress=False))
    )
    assert report.elapsed_s >= 10 / 50  # the last request may not leave before 0.2 s


def test_cli_says_when_nothing_answers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--url", "http://127.0.0.1:9", "--count", "3", "--no-progress", "--timeout", "1"]) == 2
    captured = capsys.readouterr()
    assert "is the API running" in captured.err
    assert "ConnectError" in captured.out


def test_cli_rejects_a_bad_share() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--invalid-share", "2", "--no-progress"])
    assert exit_info.value.code == 2


def test_the_summary_shows_the_queue_and_the_worker_lag_once_the_worker_caught_up(
    live_api: ApiServer, settings: Settings, aws: AwsClients
) -> None:
    config = TrafficConfig(
        live_api.url, api_key=API_KEY, count=30, concurrency=4, progress=False, queue=settings, wait_stored=30
    )
    with worker_running(QueueRunner(settings, aws, wait_seconds=1)):
        report = asyncio.run(run_traffic(config))

    assert report.accepted == 30
    assert report.queue_error is None
    assert report.queue_samples, "the queue was sampled"
    last = report.last_queue_sample
    assert last is not None
    assert (last.depth, last.dlq) == (0, 0)
    assert report.drained_s is not None
    assert report.drained_s >= 0
    assert report.worker_lag_s is not None
    assert 0 <= report.worker_lag_s < 30
    assert live_api_get(live_api, report.accepted_ids[-1]) == 200  # what "stored" meant: readable from the API
    summary = report.summary()
    assert f"queue     depth 0 at the end (max {report.max_queue_depth}" in summary
    assert "DLQ 0" in summary
    assert f"worker    lag {report.worker_lag_s:.1f} s" in summary


def test_without_a_worker_the_summary_shows_the_backlog_and_says_the_worker_is_behind(
    live_api: ApiServer, settings: Settings
) -> None:
    config = TrafficConfig(
        live_api.url, api_key=API_KEY, count=12, concurrency=4, progress=False, queue=settings, wait_stored=0.5
    )
    report = asyncio.run(run_traffic(config))

    assert report.accepted == 12
    last = report.last_queue_sample
    assert last is not None
    assert last.depth == 12
    assert report.max_queue_depth == 12
    assert report.worker_lag_s is None
    assert report.drained_s is None
    summary = report.summary()
    assert "queue     depth 12 at the end (max 12), DLQ 0" in summary
    assert "worker    behind: the last accepted purchase was not stored within 0.5 s of its 202" in summary
    assert "worker.log" in summary


def test_a_queue_that_cannot_be_read_is_reported_and_the_run_goes_on(live_api: ApiServer) -> None:
    unreachable = AwsSettings(aws_endpoint_url="http://127.0.0.1:9")
    config = TrafficConfig(live_api.url, api_key=API_KEY, count=3, progress=False, queue=unreachable)
    report = asyncio.run(run_traffic(config))

    assert report.accepted == 3
    assert report.queue_error is not None
    assert "127.0.0.1:9" in report.queue_error
    assert not report.queue_samples
    assert "queue     depth unknown: " in report.summary()
    assert "worker" not in report.summary()  # it did not wait, so it says nothing about the worker


def test_cli_json_has_the_queue_depth_and_the_worker_lag(
    live_api: ApiServer,
    settings: Settings,
    aws: AwsClients,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert settings.aws_endpoint_url is not None
    monkeypatch.setenv("CART_AWS_ENDPOINT_URL", settings.aws_endpoint_url)  # where cart-traffic finds the queue
    args = ["--url", live_api.url, "--api-key", API_KEY, "--count", "5", "--no-progress", "--json"]
    with worker_running(QueueRunner(settings, aws, wait_seconds=1)):
        assert main([*args, "--wait-stored", "30"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["accepted"] == 5
    assert (summary["queue_depth_end"], summary["dlq_depth_end"], summary["queue_error"]) == (0, 0, None)
    assert summary["queue_depth_max"] >= 0
    assert summary["worker_lag_s"] is not None
    assert summary["worker_lag_s"] >= 0

    assert main([*args, "--no-queue", "--wait-stored", "0"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["queue_depth_max"] is None
    assert summary["worker_lag_s"] is None


def live_api_get(api: ApiServer, purchase_id: str) -> int:
    return httpx.get(f"{api.url}/purchases/{purchase_id}", headers={"X-API-Key": API_KEY}).status_code
