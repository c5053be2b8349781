"""Fuzzing the API from its own OpenAPI schema with schemathesis, from fixed seeds.

Two tests, against the real app with its idempotency table (and, for the second, SNS, SQS, the
worker and DynamoDB) on the moto server:

- POST /purchases under Hypothesis: no 5xx, answers that match the documented responses, and
  nothing published that breaks the contract; dates on both sides of the contract's bounds.
- every operation through schemathesis's engine with every check and its default phases (what
  ``schemathesis run --checks all`` does): zero failures, and the positive POST examples are
  accepted, because the document states the contract's limits.

Both run from a fixed seed, so CI and every developer see the same examples. The ``fuzz_random``
variant of the first draws fresh examples on each run; it is deselected by default
(``pytest -m fuzz_random`` runs it).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis.checks import CHECKS, is_check_class, load_all_checks
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events, from_schema
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance
from schemathesis.specs.openapi.formats import register_string_format, unregister_string_format
from starlette.concurrency import run_in_threadpool

from cart_api.app import create_app
from cart_api.models import PURCHASES, Purchase
from cart_api.publisher import OutgoingMessage, Publisher
from cart_api.runner import QueueRunner
from cart_api.settings import Settings
from tests.cart_api.fakes import RecordingPublisher
from tests.conftest import API_KEY

SEED = 20261125
PURCHASE_DATE = PURCHASES.column("purchase_date")


def contract_dates(slack_days: int = 0) -> st.SearchStrategy[str]:
    """Dates within the contract's bounds for purchase_date (widened by ``slack_days`` each side).

    JSON Schema cannot bound a date string, so the document states these bounds in words and the
    fuzzer learns them here, from the same contract options.
    """
    first = date.fromisoformat(PURCHASE_DATE.options["minimum"])
    # the API checks against today in UTC; a day less keeps an example valid across midnight
    last = datetime.now(UTC).date() + timedelta(days=int(PURCHASE_DATE.custom["maxDaysAfterReceipt"]) - 1)
    slack = timedelta(days=slack_days)
    return st.dates(first - slack, last + slack).map(date.isoformat)


@contextmanager
def date_format(strategy: st.SearchStrategy[str]) -> Iterator[None]:
    """schemathesis draws ``format: date`` strings from ``strategy`` inside the block."""
    register_string_format("date", strategy)
    try:
        yield
    finally:
        unregister_string_format("date")


def header(headers: Mapping[str, Any], name: str) -> str | None:
    """One header's value from a plain, case-insensitive or multi-valued (list) mapping."""
    for key, value in headers.items():
        if key.lower() == name.lower():
            return str(value[0] if isinstance(value, list | tuple) else value)
    return None


@pytest.mark.parametrize(
    "deterministic",
    [pytest.param(True, id="seeded"), pytest.param(False, id="random", marks=pytest.mark.fuzz_random)],
)
def test_posting_purchases_never_errors_and_accepts_only_contract_purchases(
    settings: Settings, deterministic: bool
) -> None:
    publisher = RecordingPublisher()
    app = create_app(settings.model_copy(update={"rate_limit_per_second": 0}))
    app.state.backend.publisher = publisher
    operation = schemathesis.openapi.from_asgi("/openapi.json", app)["/purchases"]["POST"]
    statuses: Counter[int] = Counter()
    replays = 0

    @given(case=operation.as_strategy())
    @hypothesis_settings(
        max_examples=100,
        derandomize=deterministic,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    def post(case: Any) -> None:
        nonlocal replays
        before = len(publisher.bodies)
        response = case.call(headers={**(case.headers or {}), "X-API-Key": API_KEY})
        # dates either side of the contract's bounds may rightly be refused: the fuzzer learns the
        # bounds only from the description; the second test checks positive data acceptance
        case.validate_response(response, excluded_checks=[positive_data_acceptance])
        statuses[response.status_code] += 1
        replayed = header(response.headers, "Idempotent-Replayed") == "true"
        replays += replayed
        if response.status_code == 202 and not replayed:
            (published,) = publisher.bodies[before:]
            Purchase.model_validate(published)  # the whole contract, system fields included
        else:
            assert len(publisher.bodies) == before  # refused or replayed: nothing published

    with date_format(contract_dates(slack_days=10)):
        post()
    assert {202, 422} <= set(statuses), statuses  # the fuzzer reached acceptance as well as refusals


def test_header_reads_every_mapping_schemathesis_gives() -> None:
    assert header({"Idempotent-Replayed": ["true"]}, "idempotent-replayed") == "true"
    assert header({"idempotent-replayed": "true"}, "Idempotent-Replayed") == "true"
    assert header({"Location": ["x"]}, "Idempotent-Replayed") is None


class StoreOnAccept:
    """The app's SNS publisher, then the worker polling the queue until the purchase is stored.

    A 202 is an accepted purchase, not yet a stored one (the status URL answers 404 until the
    worker has stored it). Storing it before the 202 is answered lets the stateful phase follow
    the ``Location`` to a 200 and check that the stored purchase matches the document.
    """

    def __init__(self, publisher: Publisher, runner: QueueRunner) -> None:
        self.publisher = publisher
        self.runner = runner
        self.stored = 0

    async def publish(self, message: OutgoingMessage) -> None:
        await self.publisher.publish(message)
        await run_in_threadpool(self._store)

    def _store(self) -> None:
        for _ in range(20):  # moto delivers from SNS to SQS during the publish; each poll waits up to 1 s
            result = self.runner.poll_once()
            assert not result.dead_lettered, result
            assert not result.retry, result
            if result.stored:
                self.stored += len(result.stored)
                return
        raise AssertionError("a published purchase did not reach the worker within 20 polls")

    def close(self) -> None:
        self.publisher.close()


def scoped_idempotency_key(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """Give an Idempotency-Key drawn for a positive case the body's digest as a suffix.

    The fuzzer draws few distinct keys ("0" again and again) for different bodies, and reusing a
    key with another body is rightly 422; with the digest, a repeated key and body is still a
    replay (202, nothing published) and a repeated key with another body is a new purchase.
    """
    key = (case.headers or {}).get("Idempotency-Key")
    if (
        isinstance(key, str)
        and case.body is not None
        and case.meta is not None
        and case.meta.generation.mode == GenerationMode.POSITIVE
    ):
        digest = hashlib.sha256(json.dumps(case.body, sort_keys=True, default=str).encode()).hexdigest()[:16]
        case.headers["Idempotency-Key"] = f"{key[:238]}~{digest}"  # still within the documented 255


@contextmanager
def global_hook(function: Any, name: str) -> Iterator[None]:
    """A schemathesis hook that only the global scope supports, registered for the block only."""
    schemathesis.hook(name)(function)
    try:
        yield
    finally:
        schemathesis.hooks.GLOBAL_HOOK_DISPATCHER.unregister(function)


def test_every_check_passes_on_every_operation(settings: Settings) -> None:
    """The equivalent of ``schemathesis run --checks all`` (default phases), from a fixed seed."""
    load_all_checks()
    every_check = sorted(c.__name__ for c in CHECKS.get_all() if not is_check_class(c))
    config = SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "headers": {"X-API-Key": API_KEY},
            "checks": {name: {"enabled": True} for name in every_check},
            "generation": {"max-examples": 40, "deterministic": True},
        }
    )
    app = create_app(settings.model_copy(update={"rate_limit_per_second": 0}))
    store = StoreOnAccept(app.state.backend.publisher, QueueRunner(settings, wait_seconds=1))
    app.state.backend.publisher = store
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)

    failures: list[str] = []
    errors: list[str] = []
    answers: Counter[tuple[str, int]] = Counter()  # (operation, status) of every request sent
    positive_posts: Counter[int] = Counter()  # statuses of positive POST /purchases with the API key
    with date_format(contract_dates()), global_hook(scoped_idempotency_key, "before_call"):
        for event in from_schema(schema).execute():
            if isinstance(event, events.ScenarioFinished):
                recorder = event.recorder
                for case_id, node in recorder.cases.items():
                    case, interaction = node.value, recorder.interactions.get(case_id)
                    if interaction is None or interaction.response is None:
                        continue
                    status = interaction.response.status_code
                    answers[case.operation.label, status] += 1
                    if (
                        case.operation.label == "POST /purchases"
                        and case.meta is not None
                        and case.meta.generation.mode == GenerationMode.POSITIVE
                        and header(interaction.request.headers, "X-API-Key") == API_KEY
                    ):
                        positive_posts[status] += 1
                for case_id, checks in recorder.checks.items():
                    failures += [
                        f"{recorder.cases[case_id].value.operation.label}: {c.name}: {c.failure_info.failure.title}"
                        for c in checks
                        if c.status == Status.FAILURE and c.failure_info is not None
                    ]
            elif isinstance(event, events.NonFatalError | events.FatalError):
                errors.append(str(getattr(event, "info", None) or getattr(event, "exception", event)))
            elif isinstance(event, events.EngineFinished):
                failures += [f.title for f in event.failures]

    assert not errors, errors
    assert not failures, sorted(set(failures))
    sent = sum(positive_posts.values())
    print(
        f"positive POST /purchases examples accepted: {positive_posts[202]}/{sent}; answers: {sorted(answers.items())}"
    )
    assert sent > 0
    assert positive_posts[202] == sent, positive_posts  # what positive_data_acceptance checked
    # every operation was reached, and the stateful phase followed a 202's Location to the stored purchase
    assert {label for label, _ in answers} >= {
        "POST /purchases",
        "GET /purchases/{purchase_id}",
        "GET /health",
        "GET /ready",
    }
    assert answers["GET /purchases/{purchase_id}", 200] > 0, answers
    assert store.stored > 0
