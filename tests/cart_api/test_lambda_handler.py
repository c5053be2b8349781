"""The Lambda entry points against the moto server: the API through Mangum, the worker with
partial batch failures."""

from __future__ import annotations

import base64
import gc
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from cart_api import lambda_handler
from cart_api.settings import Settings, get_settings
from cart_api.store import to_json
from cart_aws.aws import AwsClients
from tests.cart_api.test_worker import purchase
from tests.conftest import API_KEY, VALID_PURCHASE, queue_depth, receive_all


@pytest.fixture
def lambda_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Lambda reads its settings from the environment, as in production."""
    monkeypatch.setenv("CART_AWS_ENDPOINT_URL", str(settings.aws_endpoint_url))
    monkeypatch.setenv("CART_API_KEYS", json.dumps({n: k.get_secret_value() for n, k in settings.api_keys.items()}))
    monkeypatch.setenv("CART_MAX_RECEIVE_COUNT", str(settings.max_receive_count))
    caches = (get_settings, lambda_handler._api, lambda_handler._worker)
    for cache in caches:
        cache.cache_clear()
    yield monkeypatch
    for cache in caches:
        cache.cache_clear()
    gc.unfreeze()  # the execution environment ends: its frozen heap goes back to the collector


def http_api_event(
    method: str, path: str, body: str | None = None, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) event."""
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"host": "api.example.com", **(headers or {})},
        "requestContext": {
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.9"},
            "domainName": "api.example.com",
            "stage": "$default",
            "requestId": "req-1",
        },
        "body": body,
        "isBase64Encoded": False,
    }


def test_api_handler_accepts_a_purchase_through_mangum(lambda_env: pytest.MonkeyPatch, aws: AwsClients) -> None:
    event = http_api_event(
        "POST",
        "/purchases",
        json.dumps(VALID_PURCHASE),
        {"content-type": "application/json", "x-api-key": API_KEY},
    )
    response = lambda_handler.api_handler(event, None)
    assert response["statusCode"] == 202
    assert gc.get_freeze_count() > 0  # the init settled the heap (lifespan is off under Mangum)
    body = json.loads(response["body"])
    assert body["status_url"] == f"https://api.example.com/purchases/{body['purchase_id']}"
    assert queue_depth(aws, get_settings().purchases_queue) == 1

    refused = lambda_handler.api_handler(
        http_api_event("POST", "/purchases", "{}", {"content-type": "application/json"}), None
    )
    assert refused["statusCode"] == 401


def rest_api_event(
    method: str, path: str, body: str | None = None, headers: dict[str, str] | None = None, claims: Any = None
) -> dict[str, Any]:
    """An API Gateway REST API (payload 1.0) proxy event, as the template's API sends it; with
    ``claims``, as its Cognito authorizer passes on a verified access token's."""
    # requestContext.path: the path as the client called it, on the execute-api URL (with the stage)
    context: dict[str, Any] = {
        "stage": "prod",
        "path": f"/prod{path}",
        "requestId": "req-2",
        "identity": {"sourceIp": "203.0.113.9"},
    }
    if claims is not None:
        context["authorizer"] = {"claims": claims}
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": {
            "Host": "abc123.execute-api.us-east-1.amazonaws.com",
            "X-Forwarded-Proto": "https",
            **(headers or {}),
        },
        "multiValueHeaders": {},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "requestContext": context,
        "body": body,
        "isBase64Encoded": False,
    }


def test_through_a_rest_api_the_links_carry_the_stage(lambda_env: pytest.MonkeyPatch, aws: AwsClients) -> None:
    """The client called https://<id>.execute-api.<region>.amazonaws.com/prod/...: the status URL and
    /docs' OpenAPI URL it is given must work there."""
    headers = {"content-type": "application/json", "x-api-key": API_KEY}
    accepted = lambda_handler.api_handler(
        rest_api_event("POST", "/purchases", json.dumps(VALID_PURCHASE), headers), None
    )
    assert accepted["statusCode"] == 202
    body = json.loads(accepted["body"])
    status_url = f"https://abc123.execute-api.us-east-1.amazonaws.com/prod/purchases/{body['purchase_id']}"
    assert body["status_url"] == status_url
    assert accepted["headers"]["location"] == status_url
    # what API Gateway sends when the client follows it: the route answers (not stored yet), no missing route
    followed = lambda_handler.api_handler(
        rest_api_event("GET", f"/purchases/{body['purchase_id']}", None, headers), None
    )
    assert followed["statusCode"] == 404
    assert "not stored" in json.loads(base64.b64decode(followed["body"]))["detail"]
    docs = lambda_handler.api_handler(rest_api_event("GET", "/docs"), None)
    assert docs["statusCode"] == 200
    assert "'/prod/openapi.json'" in docs["body"]
    assert lambda_handler.api_handler(rest_api_event("GET", "/openapi.json"), None)["statusCode"] == 200
    # a custom domain mapped without a base path: the client's path is the app's
    direct = rest_api_event("POST", "/purchases", json.dumps(VALID_PURCHASE), headers)
    direct["requestContext"]["path"] = "/purchases"
    mapped = json.loads(lambda_handler.api_handler(direct, None)["body"])
    assert (
        mapped["status_url"] == f"https://abc123.execute-api.us-east-1.amazonaws.com/purchases/{mapped['purchase_id']}"
    )


def test_in_cognito_mode_the_client_is_the_verified_tokens_app_client(
    lambda_env: pytest.MonkeyPatch, aws: AwsClients
) -> None:
    lambda_env.setenv("CART_AUTH_MODE", "cognito")
    json_body = {"content-type": "application/json"}
    claims = {"client_id": "4lbd1shop", "scope": "cart-api-prod/purchases", "token_use": "access"}
    accepted = lambda_handler.api_handler(
        rest_api_event("POST", "/purchases", json.dumps(VALID_PURCHASE), json_body, claims), None
    )
    assert accepted["statusCode"] == 202
    assert queue_depth(aws, get_settings().purchases_queue) == 1
    # an API key is no way in: only what the authorizer verified counts
    with_key = rest_api_event("POST", "/purchases", json.dumps(VALID_PURCHASE), {**json_body, "x-api-key": API_KEY})
    refused = lambda_handler.api_handler(with_key, None)
    assert refused["statusCode"] == 401
    # Mangum base64-encodes problem+json; the REST API decodes it for the client (BinaryMediaTypes */*)
    assert refused["isBase64Encoded"] is True
    assert "Cognito access token" in json.loads(base64.b64decode(refused["body"]))["detail"]
    assert refused["headers"]["www-authenticate"] == "Bearer"


def test_worker_handler_reports_only_unstored_records(
    lambda_env: pytest.MonkeyPatch, settings: Settings, aws: AwsClients
) -> None:
    lambda_env.setenv("CART_PURCHASES_TABLE", "no-such-table")  # every store fails transiently
    event = {
        "Records": [
            {
                "messageId": "m-ok-but-unstorable",
                "body": to_json(purchase()),
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {"schema_version": {"dataType": "String", "stringValue": "1.0.0"}},
            },
            {"messageId": "m-poison", "body": "[]", "attributes": {"ApproximateReceiveCount": "1"}},
        ]
    }
    response = lambda_handler.worker_handler(event, None)
    # the poison record was dead-lettered (handled); the unstorable one is retried by SQS
    assert response == {"batchItemFailures": [{"itemIdentifier": "m-ok-but-unstorable"}]}
    (dead,) = receive_all(aws, settings.purchases_dlq)
    assert dead["MessageAttributes"]["source_message_id"]["StringValue"] == "m-poison"


def test_no_api_key_reaches_a_log_record(
    lambda_env: pytest.MonkeyPatch, aws: AwsClients, caplog: pytest.LogCaptureFixture
) -> None:
    """Every logger at DEBUG (Mangum, FastAPI, botocore, the app) while the handler serves an API
    Gateway event carrying the key: accepted, refused with a wrong key, and failing (SNS gone)."""
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-but-secret-looking-key-7Qx2"
    headers = {"content-type": "application/json"}
    accepted = lambda_handler.api_handler(
        rest_api_event("POST", "/purchases", json.dumps(VALID_PURCHASE), {**headers, "X-API-Key": API_KEY}), None
    )
    assert accepted["statusCode"] == 202
    refused = lambda_handler.api_handler(
        rest_api_event("POST", "/purchases", json.dumps(VALID_PURCHASE), {**headers, "X-API-Key": wrong}), None
    )
    assert refused["statusCode"] == 401
    aws.sns.delete_topic(TopicArn=aws.topic_arn(get_settings().purchases_topic))
    failed = lambda_handler.api_handler(
        rest_api_event("POST", "/purchases", json.dumps(VALID_PURCHASE), {**headers, "X-API-Key": API_KEY}), None
    )
    assert failed["statusCode"] == 503
    assert any(r.levelno >= logging.ERROR for r in caplog.records)  # the failure was logged ...
    # ... without the key: in no message, argument or traceback
    for key in (API_KEY, wrong):
        assert key not in caplog.text
        assert not [r.getMessage() for r in caplog.records if key in r.getMessage()]


@pytest.mark.parametrize(
    ("called", "path", "prefix"),
    [
        ("/prod/purchases", "/purchases", "/prod"),
        ("/prod/", "/", "/prod"),
        ("/prod", "/", "/prod"),
        ("/v1/purchases/abc", "/purchases/abc", "/v1"),  # a custom domain's base path
        ("/purchases", "/purchases", ""),
        ("/elsewhere", "/purchases", ""),  # not a prefix of ours: leave the URL alone
    ],
)
def test_the_stage_prefix_is_what_the_client_called_before_the_apps_path(called: str, path: str, prefix: str) -> None:
    assert lambda_handler.stage_prefix({"httpMethod": "GET", "requestContext": {"path": called}}, path) == prefix
    # an HTTP API event (payload 2.0) is left alone: its rawPath is what the app routes
    assert lambda_handler.stage_prefix({"version": "2.0", "requestContext": {"path": called}}, path) == ""
