"""The API's HTTP behaviour with its AWS-backed services replaced on ``app.state.backend``:
validation, auth, content type, body size, and what is published."""

from __future__ import annotations

import gc
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cart_api.app import create_app
from cart_api.idempotency import IdempotencyConflict, IdempotencyInProgress
from cart_api.models import PURCHASES, Purchase, PurchaseRequest
from cart_api.ratelimit import TokenBucketLimiter
from cart_api.routers.purchases import StatusUrls, build_message
from cart_api.settings import Settings
from cart_api.store import format_timestamp, ingest_hour, to_json
from cart_api.traffic import generate_requests
from tests.cart_api.fakes import RaisingIdempotencyStore, RecordingPublisher
from tests.conftest import API_KEY, VALID_PURCHASE

HEADERS = {"X-API-Key": API_KEY}


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def client(publisher: RecordingPublisher) -> Iterator[TestClient]:
    # an endpoint nobody listens on: any AWS call not overridden fails loudly
    app = create_app(Settings(aws_endpoint_url="http://127.0.0.1:9", api_keys={"tests": API_KEY}, max_body_bytes=2048))
    app.state.backend.publisher = publisher
    app.state.backend.lookup = lambda pid: None
    with TestClient(app) as test_client:
        yield test_client


def test_while_serving_the_startup_heap_is_out_of_the_collectors_scans() -> None:
    """Startup builds the publisher's SNS client and freezes what is alive, so Python's full
    collections (which stopped every request for 35-75 ms) do not walk it; shutdown gives it back."""
    app = create_app(Settings(aws_endpoint_url="http://127.0.0.1:9", api_keys={"tests": API_KEY}))
    backend = app.state.backend

    def scanned(obj: object) -> bool:  # frozen objects are in none of the collector's generations
        return any(o is obj for o in gc.get_objects())

    with TestClient(app):
        client = backend.aws.sns_publishing  # built at startup, before the first request
        assert gc.get_freeze_count() > 0
        assert not scanned(client)
        assert not scanned(backend)
        made_later = type("MadeLater", (), {})()
        assert scanned(made_later)
    assert gc.get_freeze_count() == 0
    assert scanned(client)


def test_accepts_a_valid_purchase_and_publishes_it_with_system_fields(
    client: TestClient, publisher: RecordingPublisher
) -> None:
    response = client.post("/purchases", json=VALID_PURCHASE, headers=HEADERS)
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "accepted"
    assert response.headers["location"] == body["status_url"]
    assert body["status_url"].endswith(f"/purchases/{body['purchase_id']}")
    (published,) = publisher.bodies
    assert {k: published[k] for k in VALID_PURCHASE} == VALID_PURCHASE
    assert published["purchase_id"] == body["purchase_id"]
    assert published["received_at"] == body["received_at"]
    received = datetime.fromisoformat(published["received_at"])
    assert published["ingest_hour"] == received.strftime("%Y-%m-%dT%H")
    assert published["schema_version"] == "1.0.0"
    Purchase.model_validate(published)  # what is published satisfies the whole contract
    assert publisher.messages[0].attributes == {"purchase_id": body["purchase_id"], "schema_version": "1.0.0"}


def test_each_accepted_purchase_gets_its_own_id(client: TestClient, publisher: RecordingPublisher) -> None:
    ids = {client.post("/purchases", json=VALID_PURCHASE, headers=HEADERS).json()["purchase_id"] for _ in range(3)}
    assert len(ids) == 3
    assert len(publisher.messages) == 3


def _with(**changes: Any) -> dict[str, Any]:
    body = {**VALID_PURCHASE, **changes}
    return {k: v for k, v in body.items() if v is not ...}


@pytest.mark.parametrize(
    ("body", "field", "reason_part"),
    [
        (_with(total_amount=...), "total_amount", "required"),
        (_with(number_of_installments="three"), "number_of_installments", "valid integer"),
        (_with(total_amount=-10), "total_amount", "greater than 0"),
        (_with(total_amount=0), "total_amount", "greater than 0"),
        (_with(number_of_installments=0), "number_of_installments", "greater than or equal to 1"),
        (_with(number_of_installments=100), "number_of_installments", "less than or equal to 24"),
        (_with(purchase_date="2999-12-31"), "purchase_date", "after the day of receipt"),
        (_with(discount=5), "discount", "not permitted"),
        (["not", "an", "object"], "body", "valid dictionary"),
    ],
)
def test_bad_purchase_gets_422_naming_the_field_and_publishes_nothing(
    client: TestClient, publisher: RecordingPublisher, body: Any, field: str, reason_part: str
) -> None:
    response = client.post("/purchases", json=body, headers=HEADERS)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422
    assert [e["field"] for e in problem["errors"]] == [field]
    assert reason_part in problem["errors"][0]["reason"]
    assert field in problem["detail"]
    assert publisher.messages == []


def test_several_bad_fields_are_all_reported(client: TestClient) -> None:
    response = client.post("/purchases", json=_with(total_amount=0, number_of_installments=0), headers=HEADERS)
    assert {e["field"] for e in response.json()["errors"]} == {"total_amount", "number_of_installments"}


def test_malformed_json_gets_400(client: TestClient, publisher: RecordingPublisher) -> None:
    response = client.post(
        "/purchases", content=b'{"buyer_id": "B1",', headers={**HEADERS, "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    problem = response.json()
    assert problem["title"] == "Malformed JSON"
    assert problem["errors"][0]["field"] == "body"
    assert publisher.messages == []


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_non_json_content_type_gets_415(
    client: TestClient, publisher: RecordingPublisher, content_type: str | None
) -> None:
    headers = dict(HEADERS)
    if content_type:
        headers["Content-Type"] = content_type
    response = client.post("/purchases", content=json.dumps(VALID_PURCHASE).encode(), headers=headers)
    assert response.status_code == 415
    assert "application/json" in response.json()["detail"]
    assert publisher.messages == []


def test_json_with_charset_is_accepted(client: TestClient) -> None:
    response = client.post(
        "/purchases",
        content=json.dumps(VALID_PURCHASE).encode(),
        headers={**HEADERS, "Content-Type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 202


def test_huge_body_gets_413_before_anything_is_parsed(client: TestClient, publisher: RecordingPublisher) -> None:
    huge = _with(buyer_id="B" * 5000)
    response = client.post("/purchases", json=huge, headers=HEADERS)
    assert response.status_code == 413
    assert response.json()["title"] == "Request body too large"
    assert publisher.messages == []


def test_huge_chunked_body_gets_413(client: TestClient, publisher: RecordingPublisher) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b" " * 500

    response = client.post("/purchases", content=chunks(), headers={**HEADERS, "Content-Type": "application/json"})
    assert response.status_code == 413
    assert publisher.messages == []


def test_small_chunked_body_is_replayed_to_the_app(client: TestClient, publisher: RecordingPublisher) -> None:
    payload = json.dumps(VALID_PURCHASE).encode()
    response = client.post(
        "/purchases",
        content=iter([payload[:10], payload[10:]]),
        headers={**HEADERS, "Content-Type": "application/json"},
    )
    assert response.status_code == 202
    assert len(publisher.messages) == 1


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}, {"X-API-Key": ""}])
def test_writes_and_reads_need_a_valid_api_key(
    client: TestClient, publisher: RecordingPublisher, headers: dict[str, str]
) -> None:
    response = client.post("/purchases", json=VALID_PURCHASE, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "ApiKey"
    assert "X-API-Key" in response.json()["detail"] or "not valid" in response.json()["detail"]
    assert client.get("/purchases/0b6f7c1e-1f2a-4c3b-9d4e-5f6a7b8c9d0e", headers=headers).status_code == 401
    assert publisher.messages == []


def test_sns_not_confirming_gives_503_and_no_acceptance(client: TestClient, publisher: RecordingPublisher) -> None:
    publisher.fail = True
    response = client.post("/purchases", json=VALID_PURCHASE, headers=HEADERS)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert "not accepted" in response.json()["detail"]


@pytest.mark.parametrize(
    ("error", "status"),
    [(IdempotencyConflict("k"), 422), (IdempotencyInProgress("k"), 409)],
)
def test_idempotency_refusals_map_to_their_status(
    client: TestClient, publisher: RecordingPublisher, error: Exception, status: int
) -> None:
    client.app.state.backend.idempotency = RaisingIdempotencyStore(error)  # type: ignore[attr-defined]
    response = client.post("/purchases", json=VALID_PURCHASE, headers={**HEADERS, "Idempotency-Key": "k"})
    assert response.status_code == status
    assert publisher.messages == []


def test_unknown_purchase_is_404_and_bad_id_is_422(client: TestClient) -> None:
    missing = client.get("/purchases/0b6f7c1e-1f2a-4c3b-9d4e-5f6a7b8c9d0e", headers=HEADERS)
    assert missing.status_code == 404
    assert "not stored" in missing.json()["detail"]
    bad = client.get("/purchases/not-a-uuid", headers=HEADERS)
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "path.purchase_id"


def test_health_needs_nothing_and_ready_reports_each_dependency(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    client.app.state.backend.readiness = lambda: {"sns": "ok", "dynamodb": "down"}  # type: ignore[attr-defined]
    response = client.get("/ready")
    assert response.status_code == 503
    assert response.json()["checks"] == {"sns": "ok", "dynamodb": "down"}


def test_openapi_documents_the_contract_auth_and_problems(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    post = spec["paths"]["/purchases"]["post"]
    assert set(post["responses"]) >= {"202", "400", "401", "409", "413", "415", "422", "503"}
    request_schema = spec["components"]["schemas"]["PurchaseRequest"]
    assert request_schema["properties"]["number_of_installments"]["maximum"] == 24
    assert spec["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"
    assert client.get("/docs").status_code == 200


def test_every_error_response_is_documented_as_problem_details(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    errors = {
        (method, path, status): response
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        for status, response in operation["responses"].items()
        if status[0] in "45"
    }
    assert ("get", "/purchases/{purchase_id}", "422") in errors  # FastAPI's own 422, as the API answers it
    assert ("get", "/ready", "503") in errors
    for where, response in errors.items():
        assert list(response["content"]) == ["application/problem+json"], where
        name = response["content"]["application/problem+json"]["schema"]["$ref"].rsplit("/", 1)[-1]
        assert set(schemas[name]["required"]) >= {"title", "status"}, where  # Problem or an extension of it
    assert "HTTPValidationError" not in schemas
    post = spec["paths"]["/purchases"]["post"]["responses"]
    assert post["202"]["headers"]["Location"]["required"] is True
    assert post["503"]["headers"]["Retry-After"]["required"] is True


def test_request_schema_states_the_contract_limits(client: TestClient) -> None:
    request = client.get("/openapi.json").json()["components"]["schemas"]["PurchaseRequest"]
    fields = request["properties"]
    assert request["additionalProperties"] is False
    assert request["required"] == [c.name for c in PURCHASES.columns() if c.source == "client"]
    for name in ("buyer_id", "product_id"):
        options = PURCHASES.column(name).options
        assert {k: fields[name][k] for k in ("minLength", "maxLength", "pattern")} == {
            k: options[k] for k in ("minLength", "maxLength", "pattern")
        }
    assert (fields["number_of_installments"]["minimum"], fields["number_of_installments"]["maximum"]) == (1, 24)
    assert {k: fields["total_amount"][k] for k in ("exclusiveMinimum", "maximum", "multipleOf")} == {
        "exclusiveMinimum": 0,
        "maximum": 1000000,
        "multipleOf": 0.01,
    }
    date_field = fields["purchase_date"]
    assert date_field["format"] == "date"
    # JSON Schema cannot bound a date string: the bounds are in the description
    assert "on or after 2020-01-01" in date_field["description"]
    assert "not more than 1 day(s) after the day it is received" in date_field["description"]


def test_ready_answers_problem_details_when_a_dependency_is_down(client: TestClient) -> None:
    client.app.state.backend.readiness = lambda: {"sns": "ok", "dynamodb": "down"}  # type: ignore[attr-defined]
    response = client.get("/ready")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {
        "type": "/problems/not-ready",
        "title": "Not ready",
        "status": 503,
        "detail": "dynamodb: down",
        "instance": "/ready",
        "checks": {"sns": "ok", "dynamodb": "down"},
    }


def test_settings_refuse_the_dev_key_on_real_aws() -> None:
    with pytest.raises(ValueError, match="CART_API_KEYS"):
        Settings(aws_endpoint_url="")
    assert Settings(aws_endpoint_url="", api_keys={"shop": "a-real-secret"}).is_emulated is False


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_client_over_its_rate_gets_429_with_retry_after_and_nothing_is_published(
    client: TestClient, publisher: RecordingPublisher
) -> None:
    clock = FakeClock()
    limiter = TokenBucketLimiter(rate=2, burst=3, clock=clock)
    client.app.state.backend.limiter = limiter  # type: ignore[attr-defined]
    statuses = [client.post("/purchases", json=VALID_PURCHASE, headers=HEADERS).status_code for _ in range(4)]
    assert statuses == [202, 202, 202, 429]
    refused = client.post("/purchases", json=VALID_PURCHASE, headers=HEADERS)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1"
    assert refused.headers["content-type"] == "application/problem+json"
    assert "tests" in refused.json()["detail"]
    assert len(publisher.bodies) == 3
    clock.now += 0.5  # one token back at 2 per second
    assert client.post("/purchases", json=VALID_PURCHASE, headers=HEADERS).status_code == 202
    assert client.post("/purchases", json=VALID_PURCHASE, headers=HEADERS).status_code == 429


def test_buckets_are_per_client() -> None:
    limiter = TokenBucketLimiter(rate=1, burst=1, clock=FakeClock())
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") == pytest.approx(1.0)
    assert limiter.acquire("b") == 0.0


def test_rate_limit_is_on_by_default_and_can_be_switched_off() -> None:
    assert Settings(api_keys={"x": "y"}).rate_limit_per_second > 0
    app = create_app(Settings(api_keys={"x": "y"}, rate_limit_per_second=0))
    assert app.state.backend.limiter is None


def _validated_message_body(purchase: PurchaseRequest, purchase_id: str, received_at: str) -> str:
    """The message body as the API built it before it stopped validating the whole purchase again."""
    stamped = datetime.fromisoformat(received_at)
    full = Purchase.model_validate(
        {
            **purchase.model_dump(),
            "purchase_id": purchase_id,
            "received_at": stamped,
            "ingest_hour": ingest_hour(stamped),
            "schema_version": PURCHASES.version,
        }
    )
    return to_json(full.model_dump())


@pytest.mark.parametrize(
    "amount", [0.01, 1, 10, 59.9, 129.99, 999999.99, 1000000, 3.0, 0.1, 12.5], ids=lambda a: f"amount={a}"
)
def test_message_is_the_whole_contract_without_validating_it_twice(amount: float) -> None:
    requests = [json.loads(p.body) for p in generate_requests(seed=7, count=20)]
    for i, body in enumerate(requests):
        purchase = PurchaseRequest.model_validate({**body, "total_amount": amount} if i % 2 else body)
        purchase_id, received_at = str(uuid.uuid4()), format_timestamp(datetime.now(UTC))
        message = build_message(purchase, purchase_id, received_at)
        assert message.body == _validated_message_body(purchase, purchase_id, received_at)  # byte for byte
        Purchase.model_validate_json(message.body)  # still the whole contract


def test_status_url_follows_the_host_and_root_path_of_each_request(
    client: TestClient, publisher: RecordingPublisher
) -> None:
    for host in ("api.example", "api.example", "other.example:8080", "api.example"):
        response = client.post("/purchases", json=VALID_PURCHASE, headers={**HEADERS, "Host": host})
        body = response.json()
        assert body["status_url"] == f"http://{host}/purchases/{body['purchase_id']}"
        assert response.headers["location"] == body["status_url"]
    mounted = TestClient(client.app, root_path="/stage")  # type: ignore[arg-type]
    body = mounted.post("/purchases", json=VALID_PURCHASE, headers=HEADERS).json()
    assert body["status_url"] == f"http://testserver/stage/purchases/{body['purchase_id']}"
    status = mounted.get(body["status_url"], headers=HEADERS)
    assert status.status_code == 404
    assert "not stored" in status.json()["detail"]  # the status route answered, not a missing route


def test_status_urls_keep_a_bounded_number_of_prefixes(client: TestClient) -> None:
    for i in range(StatusUrls.MAX_PREFIXES + 10):
        body = client.post("/purchases", json=VALID_PURCHASE, headers={**HEADERS, "Host": f"h{i}.example"}).json()
        assert body["status_url"] == f"http://h{i}.example/purchases/{body['purchase_id']}"
    assert len(client.app.state.status_urls._prefixes) == StatusUrls.MAX_PREFIXES  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("content_type", "key", "status"),
    [("text/plain", "wrong", 415), ("application/json", "wrong", 401), ("application/json", API_KEY, 429)],
)
def test_checks_run_in_order_json_then_key_then_rate(
    client: TestClient, publisher: RecordingPublisher, content_type: str, key: str, status: int
) -> None:
    client.app.state.backend.limiter = TokenBucketLimiter(rate=1, burst=1, clock=FakeClock())  # type: ignore[attr-defined]
    client.app.state.backend.limiter.acquire("tests")  # type: ignore[attr-defined]  # the bucket is empty
    response = client.post("/purchases", content=b"{}", headers={"X-API-Key": key, "Content-Type": content_type})
    assert response.status_code == status  # before the body's own 422
    assert publisher.messages == []


def test_clock_stamps_received_at_and_the_ingest_hour(publisher: RecordingPublisher) -> None:
    moment = datetime(2026, 11, 24, 9, 30, 15, 123456, tzinfo=UTC)
    app = create_app(Settings(aws_endpoint_url="http://127.0.0.1:9", api_keys={"tests": API_KEY}), clock=lambda: moment)
    app.state.backend.publisher = publisher
    with TestClient(app) as test_client:
        body = test_client.post("/purchases", json=VALID_PURCHASE, headers=HEADERS).json()
    assert body["received_at"] == "2026-11-24T09:30:15.123456Z"
    assert publisher.bodies[0]["ingest_hour"] == "2026-11-24T09"
