"""The traffic generator: seeded plans, and a real run against the API on a socket."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from datetime import date

import pytest

from cart_api.app import create_app
from cart_api.models import PurchaseRequest
from cart_api.runner import QueueRunner
from cart_api.settings import Settings
from cart_api.traffic import INVALID_KINDS, TrafficConfig, generate_requests, main, run_traffic
from cart_aws.aws import AwsClients
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
