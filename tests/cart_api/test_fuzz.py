"""Fuzzing the API from its own OpenAPI schema (schemathesis, bounded): no 5xx, answers that match
the documented responses, and nothing accepted that breaks the contract. Idempotency keys go to
the real DynamoDB table on the moto server; what would be published is recorded."""

from datetime import date, timedelta
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance

from cart_api import deps
from cart_api.app import create_app
from cart_api.models import Purchase
from cart_api.settings import Settings
from tests.cart_api.fakes import RecordingPublisher
from tests.conftest import API_KEY

# dates around the contract's bounds (2020-01-01 .. a day after today) rather than years 0001-9999,
# so the fuzzer reaches acceptance as well as each refusal
schemathesis.openapi.format(
    "date",
    st.dates(date(2019, 12, 20), date.today() + timedelta(days=5)).map(date.isoformat),
)


def test_posting_purchases_never_errors_and_accepts_only_contract_purchases(settings: Settings) -> None:
    publisher = RecordingPublisher()
    app = create_app(settings.model_copy(update={"rate_limit_per_second": 0}))
    app.dependency_overrides[deps.get_publisher] = lambda: publisher
    operation = schemathesis.openapi.from_asgi("/openapi.json", app)["/purchases"]["POST"]
    statuses: set[int] = set()

    @given(case=operation.as_strategy())
    @hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def post(case: Any) -> None:
        before = len(publisher.bodies)
        response = case.call_and_validate(
            headers={**(case.headers or {}), "X-API-Key": API_KEY},
            # purchase_date's range (from 2020-01-01 to a day after receipt) is a contract rule JSON
            # Schema cannot state for strings, so a schema-valid date may rightly get 422
            excluded_checks=[positive_data_acceptance],
        )
        statuses.add(response.status_code)
        assert response.status_code < 500
        if response.status_code == 202 and response.headers.get("idempotent-replayed") != "true":
            (published,) = publisher.bodies[before:]
            Purchase.model_validate(published)  # the whole contract, system fields included
        else:
            assert len(publisher.bodies) == before  # refused or replayed: nothing published

    post()
    assert {202, 422} <= statuses, statuses  # the fuzzer reached acceptance as well as refusals
