"""The API's security review (issue 12): API keys matched in constant time, no key in a response,
a settings repr or a settings error, and CORS off unless origins are configured."""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError
from pydantic_settings import SettingsError

from cart_api.app import create_app
from cart_api.keys import ApiKeyRing
from cart_api.settings import Settings
from tests.cart_api.fakes import RecordingPublisher
from tests.conftest import VALID_PURCHASE

# several clients, keys of different lengths (a short one, a generated-looking one, a long one)
KEYS = {
    "shop": "k-7f3a9c",
    "partner": "Zq4mB8rT2wXy6nLp0sVd3hJk9gFc1aEu5oIiQ7eW",
    "backfill": "long-" + "x9" * 60,
}


def _app(**overrides: object) -> TestClient:
    settings = Settings(aws_endpoint_url="http://127.0.0.1:9", api_keys=KEYS, **overrides)  # type: ignore[arg-type]
    app = create_app(settings)
    app.state.backend.publisher = RecordingPublisher()
    app.state.backend.lookup = lambda pid: None
    return TestClient(app)


@pytest.fixture
def client() -> Iterator[TestClient]:
    with _app() as test_client:
        yield test_client


def _wrong_keys() -> list[str]:
    partner = KEYS["partner"]
    return [
        partner[:-1] + ("A" if partner[-1] != "A" else "B"),  # same length, last character differs
        "X" + partner[1:],  # same length, first character differs
        partner[:-1],  # a prefix of a key
        partner + "0",  # a key and more
        KEYS["shop"][:-1],  # a prefix of the shortest
        "x" * 500,
        KEYS["shop"].upper(),
    ]


# --- constant-time matching ------------------------------------------------------------------
def test_each_configured_key_names_its_client() -> None:
    ring = ApiKeyRing({name: SecretStr(key) for name, key in KEYS.items()})
    for name, key in KEYS.items():
        assert ring.client(key) == name
    for wrong in _wrong_keys():
        assert ring.client(wrong) is None


def test_every_key_is_compared_every_time_as_digests_of_one_length(monkeypatch: pytest.MonkeyPatch) -> None:
    """No early exit (the first client is not answered sooner than the last, nor a match sooner than
    none) and no comparison of values of different lengths (compare_digest returns at once on those)."""
    ring = ApiKeyRing({name: SecretStr(key) for name, key in KEYS.items()})
    compared: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    for sent in [*KEYS.values(), *_wrong_keys()]:
        compared.clear()
        ring.client(sent)
        assert len(compared) == len(KEYS), sent
        assert set(compared) == {(32, 32)}


def test_through_the_api_each_key_is_accepted_and_others_are_refused(client: TestClient) -> None:
    for key in KEYS.values():
        response = client.post("/purchases", json=VALID_PURCHASE, headers={"X-API-Key": key})
        assert response.status_code == 202, response.text
    for wrong in _wrong_keys():
        for response in (
            client.post("/purchases", json=VALID_PURCHASE, headers={"X-API-Key": wrong}),
            client.get("/purchases/0b6f7c1e-1f2a-4c3b-9d4e-5f6a7b8c9d0e", headers={"X-API-Key": wrong}),
        ):
            assert response.status_code == 401
            # the refusal does not echo what was sent
            assert wrong not in response.text
            assert not any(wrong in value for value in response.headers.values())


# --- no key in a repr, a dump or an error -----------------------------------------------------
def test_the_settings_never_show_a_key() -> None:
    settings = Settings(api_keys=KEYS)
    shown = [repr(settings), str(settings), str(settings.model_dump()), settings.model_dump_json()]
    for text in shown:
        for key in KEYS.values():
            assert key not in text
    assert "**********" in repr(settings)
    assert settings.api_keys["shop"].get_secret_value() == KEYS["shop"]


@pytest.mark.parametrize(
    "keys",
    [
        {**KEYS, "local": "local-dev-key"},  # the development key on real AWS
        {**KEYS, "shop": 5},  # not a string
    ],
    ids=["dev-key-on-aws", "not-a-string"],
)
def test_a_settings_error_quotes_no_key(monkeypatch: pytest.MonkeyPatch, keys: dict[str, object]) -> None:
    monkeypatch.setenv("CART_AWS_ENDPOINT_URL", "")
    monkeypatch.setenv("CART_API_KEYS", json.dumps(keys))
    with pytest.raises(ValidationError) as raised:
        Settings()
    text = str(raised.value)
    assert "CART_API_KEYS" in text or "api_keys" in text  # it still says which setting
    for key in KEYS.values():
        assert key not in text


def test_unparsable_keys_are_refused_without_quoting_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CART_API_KEYS", '{"shop": ' + KEYS["partner"] + "}")  # not JSON
    with pytest.raises(SettingsError) as raised:
        Settings()
    assert "api_keys" in str(raised.value)
    assert KEYS["partner"] not in str(raised.value)
    assert KEYS["partner"] not in repr(raised.value.__cause__)


# --- CORS ---------------------------------------------------------------------------------------
PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type,x-api-key"}


def test_by_default_no_cors_headers(client: TestClient) -> None:
    origin = {"Origin": "https://shop.example"}
    preflight = client.options("/purchases", headers={**origin, **PREFLIGHT})
    assert "access-control-allow-origin" not in preflight.headers
    response = client.post("/purchases", json=VALID_PURCHASE, headers={**origin, "X-API-Key": KEYS["shop"]})
    assert response.status_code == 202
    assert "access-control-allow-origin" not in response.headers


def test_a_preflight_from_an_allowed_origin_gets_the_headers_without_a_key() -> None:
    with _app(cors_allow_origins=["https://shop.example", "https://admin.example"]) as client:
        allowed = client.options("/purchases", headers={"Origin": "https://shop.example", **PREFLIGHT})
        assert allowed.status_code == 200  # no key: a browser sends none with a preflight
        assert allowed.headers["access-control-allow-origin"] == "https://shop.example"
        assert set(allowed.headers["access-control-allow-methods"].split(", ")) == {"GET", "POST", "OPTIONS"}
        allowed_headers = {h.lower() for h in allowed.headers["access-control-allow-headers"].split(", ")}
        assert {"content-type", "x-api-key", "authorization", "idempotency-key"} <= allowed_headers

        other = client.options("/purchases", headers={"Origin": "https://evil.example", **PREFLIGHT})
        assert other.status_code == 400
        assert "access-control-allow-origin" not in other.headers

        # the actual request: the origin is echoed and the status URL readable by the page
        posted = client.post(
            "/purchases", json=VALID_PURCHASE, headers={"Origin": "https://admin.example", "X-API-Key": KEYS["shop"]}
        )
        assert posted.status_code == 202
        assert posted.headers["access-control-allow-origin"] == "https://admin.example"
        assert "location" in posted.headers["access-control-expose-headers"].lower()
        refused = client.post("/purchases", json=VALID_PURCHASE, headers={"Origin": "https://admin.example"})
        assert refused.status_code == 401  # CORS lets the browser read the answer; the key is still needed
        assert refused.headers["access-control-allow-origin"] == "https://admin.example"
        stranger = client.post(
            "/purchases", json=VALID_PURCHASE, headers={"Origin": "https://evil.example", "X-API-Key": KEYS["shop"]}
        )
        assert "access-control-allow-origin" not in stranger.headers


def test_cors_origins_come_comma_separated_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CART_CORS_ALLOW_ORIGINS", "https://shop.example, https://admin.example")
    assert Settings().cors_allow_origins == ["https://shop.example", "https://admin.example"]
    monkeypatch.setenv("CART_CORS_ALLOW_ORIGINS", "")  # what the template passes by default
    assert Settings().cors_allow_origins == []
    # a JSON list, as pydantic-settings reads every other list setting (and as a child process is
    # handed the settings): '[]' is no origin, not the origin "[]" that switched CORS on
    monkeypatch.setenv("CART_CORS_ALLOW_ORIGINS", "[]")
    assert Settings().cors_allow_origins == []
    monkeypatch.setenv("CART_CORS_ALLOW_ORIGINS", '["https://shop.example"]')
    assert Settings().cors_allow_origins == ["https://shop.example"]
