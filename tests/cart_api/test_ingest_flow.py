"""End to end on the moto server: API -> SNS -> SQS -> worker -> DynamoDB, idempotency keys,
bad input that publishes nothing, and SNS failing at the API."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from cart_api.app import create_app
from cart_api.publisher import OutgoingMessage, PublishError, SnsPublisher
from cart_api.runner import QueueRunner
from cart_api.settings import Settings
from cart_aws.aws import AwsClients
from cart_aws.ingest_shards import query_hour
from cart_dev.proxy import FaultProxy
from tests.conftest import API_KEY, VALID_PURCHASE, queue_depth, receive_all

HEADERS = {"X-API-Key": API_KEY}


@pytest.fixture
def api(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def test_a_posted_purchase_reaches_dynamodb_through_sns_sqs_and_the_worker(
    api: TestClient, settings: Settings, aws: AwsClients
) -> None:
    accepted = api.post("/purchases", json=VALID_PURCHASE, headers=HEADERS)
    assert accepted.status_code == 202
    status_url = accepted.json()["status_url"]
    assert api.get(status_url, headers=HEADERS).status_code == 404  # queued, not stored yet
    assert queue_depth(aws, settings.purchases_queue) == 1

    stats = QueueRunner(settings, aws, wait_seconds=0).drain()
    assert stats.stored == 1

    stored = api.get(status_url, headers=HEADERS)
    assert stored.status_code == 200
    purchase = stored.json()["purchase"]
    assert {k: purchase[k] for k in VALID_PURCHASE} == VALID_PURCHASE
    assert purchase["received_at"] == accepted.json()["received_at"]
    assert "ingest_shard" not in purchase  # where it is indexed is not part of the purchase
    # the lakehouse reads one hour through the index (every shard of it), without a scan
    pages = query_hour(aws, settings.purchases_table, settings.ingest_hour_index, purchase["ingest_hour"])
    found = [item for page in pages for item in page["Items"]]
    assert [i["purchase_id"]["S"] for i in found] == [purchase["purchase_id"]]


BAD_REQUESTS: list[tuple[str, bytes | Any, int]] = [
    ("missing field", {k: v for k, v in VALID_PURCHASE.items() if k != "buyer_id"}, 422),
    ("wrong type", {**VALID_PURCHASE, "number_of_installments": "3"}, 422),
    ("negative amount", {**VALID_PURCHASE, "total_amount": -1}, 422),
    ("zero amount", {**VALID_PURCHASE, "total_amount": 0}, 422),
    ("zero installments", {**VALID_PURCHASE, "number_of_installments": 0}, 422),
    ("100 installments", {**VALID_PURCHASE, "number_of_installments": 100}, 422),
    ("far future date", {**VALID_PURCHASE, "purchase_date": "2100-01-01"}, 422),
    ("unknown field", {**VALID_PURCHASE, "is_admin": True}, 422),
    ("malformed JSON", b'{"buyer_id": ', 400),
    ("huge body", {**VALID_PURCHASE, "buyer_id": "B" * 100_000}, 413),
]


@pytest.mark.parametrize(("case", "body", "status"), BAD_REQUESTS, ids=[c for c, _, _ in BAD_REQUESTS])
def test_bad_input_gets_its_status_and_publishes_nothing(
    api: TestClient, settings: Settings, aws: AwsClients, case: str, body: Any, status: int
) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = api.post("/purchases", content=content, headers={**HEADERS, "Content-Type": "application/json"})
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert queue_depth(aws, settings.purchases_queue) == 0


def test_idempotency_key_returns_the_same_purchase_and_publishes_once(
    api: TestClient, settings: Settings, aws: AwsClients
) -> None:
    headers = {**HEADERS, "Idempotency-Key": "order-7781"}
    first = api.post("/purchases", json=VALID_PURCHASE, headers=headers)
    retry = api.post("/purchases", json=VALID_PURCHASE, headers=headers)
    assert first.status_code == retry.status_code == 202
    assert retry.json() == first.json()
    assert retry.headers["idempotent-replayed"] == "true"
    assert queue_depth(aws, settings.purchases_queue) == 1

    changed = api.post("/purchases", json={**VALID_PURCHASE, "total_amount": 1.5}, headers=headers)
    assert changed.status_code == 422
    assert changed.json()["errors"][0]["field"] == "header.Idempotency-Key"

    other_key = api.post("/purchases", json=VALID_PURCHASE, headers={**HEADERS, "Idempotency-Key": "order-7782"})
    assert other_key.json()["purchase_id"] != first.json()["purchase_id"]
    assert queue_depth(aws, settings.purchases_queue) == 2


def test_same_key_of_another_client_is_another_purchase(settings: Settings, aws: AwsClients) -> None:
    two_clients = settings.model_copy(update={"api_keys": {"shop-a": SecretStr("key-a"), "shop-b": SecretStr("key-b")}})
    with TestClient(create_app(two_clients)) as api:
        a = api.post("/purchases", json=VALID_PURCHASE, headers={"X-API-Key": "key-a", "Idempotency-Key": "1"})
        b = api.post("/purchases", json=VALID_PURCHASE, headers={"X-API-Key": "key-b", "Idempotency-Key": "1"})
    assert a.json()["purchase_id"] != b.json()["purchase_id"]


def test_failed_publish_accepts_nothing_and_the_retry_keeps_the_purchase_id(
    settings: Settings, aws: AwsClients
) -> None:
    headers = {**HEADERS, "Idempotency-Key": "retry-me"}
    gone = settings.model_copy(update={"purchases_topic": "deleted-topic"})
    with TestClient(create_app(gone)) as api:
        failed = api.post("/purchases", json=VALID_PURCHASE, headers=headers)
    assert failed.status_code == 503
    assert queue_depth(aws, settings.purchases_queue) == 0
    with TestClient(create_app(settings)) as api:
        retried = api.post("/purchases", json=VALID_PURCHASE, headers=headers)
        assert retried.status_code == 202
        replay = api.post("/purchases", json=VALID_PURCHASE, headers=headers)
    assert replay.json()["purchase_id"] == retried.json()["purchase_id"]
    assert queue_depth(aws, settings.purchases_queue) == 1


def test_ready_checks_sns_and_dynamodb(api: TestClient, settings: Settings, aws: AwsClients) -> None:
    assert api.get("/ready").json() == {"status": "ready", "checks": {"sns": "ok", "dynamodb": "ok"}}
    aws.dynamodb.delete_table(TableName=settings.purchases_table)
    not_ready = api.get("/ready")
    assert not_ready.status_code == 503
    assert "ResourceNotFoundException" in not_ready.json()["checks"]["dynamodb"]


def test_concurrent_publishes_are_grouped_into_batches(settings: Settings, aws: AwsClients) -> None:
    publisher = SnsPublisher(aws.sns, aws.topic_arn(settings.purchases_topic), batch_size=10, max_in_flight=2)

    async def publish_all() -> None:
        await asyncio.gather(*(publisher.publish(OutgoingMessage(json.dumps({"n": i}))) for i in range(60)))

    asyncio.run(publish_all())
    publisher.close()
    assert publisher.stats.messages == 60
    assert publisher.stats.calls <= 60 / 5  # while 2 calls are out, the rest queue up and leave together
    assert sorted(json.loads(m["Body"])["n"] for m in receive_all(aws, settings.purchases_queue)) == list(range(60))


def test_requests_arriving_while_a_call_is_out_leave_together(settings: Settings) -> None:
    """One at a time, 5 ms apart, with SNS taking 300 ms a call: the first goes alone at once, the
    rest gather while a call is in flight instead of each taking one of the 8 call slots. The call
    outlasts the 200 ms of arrivals by far, so a loaded machine that stretches them does not turn
    the count into a measure of its own speed."""
    assert settings.aws_endpoint_url
    with FaultProxy(settings.aws_endpoint_url, delay_ms=300) as proxy:
        aws = AwsClients(settings.model_copy(update={"aws_endpoint_url": proxy.url}))
        publisher = SnsPublisher(aws.sns, aws.topic_arn(settings.purchases_topic), batch_size=10, max_in_flight=8)

        async def staggered() -> None:
            tasks = []
            for i in range(40):
                tasks.append(asyncio.create_task(publisher.publish(OutgoingMessage(json.dumps({"n": i})))))
                await asyncio.sleep(0.005)
            await asyncio.gather(*tasks)

        asyncio.run(staggered())
        publisher.close()
    assert publisher.stats.messages == 40
    assert proxy.stats.forwarded["sns:PublishBatch"] == publisher.stats.calls
    assert publisher.stats.calls <= 8  # one call per request slot would be 8+ calls of one or two
    assert publisher.stats.mean_batch >= 5


def test_single_publish_mode_and_failures_per_message(settings: Settings, aws: AwsClients) -> None:
    single = SnsPublisher(aws.sns, aws.topic_arn(settings.purchases_topic), batch_size=1)
    asyncio.run(single.publish(OutgoingMessage("{}", {"k": "v"})))
    assert (single.stats.calls, single.stats.messages) == (1, 1)
    missing = SnsPublisher(aws.sns, aws.topic_arn("nope"), batch_size=10)

    async def publish_two() -> list[BaseException | None]:
        return await asyncio.gather(
            missing.publish(OutgoingMessage("{}")), missing.publish(OutgoingMessage("{}")), return_exceptions=True
        )

    results = asyncio.run(publish_two())
    assert all(isinstance(r, PublishError) for r in results)
    single.close()
    missing.close()
