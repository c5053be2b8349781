"""The purchases contract is valid ODCS, and the models derived from it enforce exactly its rules."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from importlib import resources
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import ValidationError

from cart_api.models import Purchase, PurchaseRequest
from contracts import contract_text, load_contract
from contracts.models import contract_model
from tests.conftest import VALID_PURCHASE


def test_request_model_has_exactly_the_client_fields_with_the_contract_constraints() -> None:
    contract = load_contract("purchases")
    client = [c for c in contract.columns() if c.source == "client"]
    schema = PurchaseRequest.model_json_schema()
    assert set(schema["properties"]) == {c.name for c in client}
    assert set(schema["required"]) == {c.name for c in client if c.required}
    assert schema["additionalProperties"] is False
    for col in client:
        prop = schema["properties"][col.name]
        for odcs_key, json_key in {
            "minLength": "minLength",
            "maxLength": "maxLength",
            "pattern": "pattern",
            "minimum": "minimum",
            "maximum": "maximum",
            "exclusiveMinimum": "exclusiveMinimum",
            "multipleOf": "multipleOf",
        }.items():
            if odcs_key in col.options and col.logical_type != "date":
                assert prop[json_key] == col.options[odcs_key], (col.name, odcs_key)


def test_an_integral_json_number_is_an_integer_as_json_schema_counts_it() -> None:
    parsed = PurchaseRequest.model_validate(_request(number_of_installments=3.0))
    assert parsed.number_of_installments == 3  # type: ignore[attr-defined]
    assert type(parsed.number_of_installments) is int  # type: ignore[attr-defined]


def test_date_bounds_json_schema_cannot_state_are_in_the_description() -> None:
    prop = PurchaseRequest.model_json_schema()["properties"]["purchase_date"]
    assert prop["format"] == "date"
    assert "ge" not in prop  # not a JSON Schema keyword
    assert "minimum" not in prop  # applies to numbers, not to date strings
    assert prop["description"].endswith(
        "Must be on or after 2020-01-01 and not more than 1 day(s) after the day it is received (UTC)."
    )


def test_full_model_covers_every_contract_column() -> None:
    assert set(Purchase.model_fields) == {c.name for c in load_contract("purchases").columns()}


def _request(**changes: Any) -> dict[str, Any]:
    body = dict(VALID_PURCHASE)
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


def test_valid_purchase_is_parsed_into_exact_types() -> None:
    parsed = PurchaseRequest.model_validate(_request(total_amount=0.1))
    assert parsed.total_amount == Decimal("0.1")  # type: ignore[attr-defined]
    assert parsed.purchase_date == date(2026, 1, 15)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("changes", "field", "error_type"),
    [
        ({"buyer_id": ...}, "buyer_id", "missing"),
        ({"buyer_id": ""}, "buyer_id", "string_too_short"),
        ({"buyer_id": "x" * 65}, "buyer_id", "string_too_long"),
        ({"product_id": "no spaces"}, "product_id", "string_pattern_mismatch"),
        ({"product_id": 42}, "product_id", "string_type"),
        ({"number_of_installments": 0}, "number_of_installments", "greater_than_equal"),
        ({"number_of_installments": 100}, "number_of_installments", "less_than_equal"),
        ({"number_of_installments": "3"}, "number_of_installments", "int_type"),
        ({"number_of_installments": 2.5}, "number_of_installments", "int_type"),
        ({"number_of_installments": True}, "number_of_installments", "int_type"),
        ({"total_amount": 0}, "total_amount", "greater_than"),
        ({"total_amount": -5}, "total_amount", "greater_than"),
        ({"total_amount": 1_000_000.01}, "total_amount", "less_than_equal"),
        ({"total_amount": 1.005}, "total_amount", "decimal_max_places"),
        ({"total_amount": "10.00"}, "total_amount", "number_type"),
        ({"total_amount": float("inf")}, "total_amount", "finite_number"),
        ({"purchase_date": "2019-12-31"}, "purchase_date", "greater_than_equal"),
        ({"purchase_date": "2026-02-30"}, "purchase_date", "date_invalid"),
        ({"purchase_date": "15/01/2026"}, "purchase_date", "date_format"),
        ({"purchase_date": "2026-01-15T10:00:00Z"}, "purchase_date", "date_format"),
        ({"purchase_date": "2999-01-01"}, "purchase_date", "date_too_far_in_future"),
        ({"coupon": "FREE"}, "coupon", "extra_forbidden"),
    ],
)
def test_each_contract_rule_refuses_with_the_field_and_reason(
    changes: dict[str, Any], field: str, error_type: str
) -> None:
    with pytest.raises(ValidationError) as info:
        PurchaseRequest.model_validate(_request(**changes))
    errors = info.value.errors()
    assert [(e["loc"], e["type"]) for e in errors] == [((field,), error_type)]


def test_future_date_rule_is_relative_to_receipt_in_the_full_model() -> None:
    received = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)
    base = {
        **VALID_PURCHASE,
        "purchase_id": "0b6f7c1e-1f2a-4c3b-9d4e-5f6a7b8c9d0e",
        "received_at": received.isoformat(),
        "ingest_hour": "2026-03-01T23",
        "schema_version": "1.0.0",
    }
    # one day of slack after the day of receipt, however late the message is processed
    Purchase.model_validate({**base, "purchase_date": "2026-03-02"})
    with pytest.raises(ValidationError, match="date_too_far_in_future"):
        Purchase.model_validate({**base, "purchase_date": "2026-03-03"})
    today = datetime.now(UTC).date()
    PurchaseRequest.model_validate(_request(purchase_date=(today + timedelta(days=1)).isoformat()))
    with pytest.raises(ValidationError):
        PurchaseRequest.model_validate(_request(purchase_date=(today + timedelta(days=2)).isoformat()))


def test_unsupported_logical_type_is_reported() -> None:
    contract = load_contract("purchases")
    broken = contract.document.model_copy(deep=True)
    assert broken.schema_
    assert broken.schema_[0].properties
    broken.schema_[0].properties[0].logicalType = "vector"
    with pytest.raises(ValueError, match="not supported"):
        contract_model(type(contract)(contract.name, contract.version, broken), "Broken")


CONTRACTS = sorted(
    p.name.removesuffix(".odcs.yaml") for p in resources.files("contracts").iterdir() if p.name.endswith(".odcs.yaml")
)


@pytest.mark.parametrize("name", CONTRACTS)
def test_every_contract_passes_datacontract_lint(name: str) -> None:
    """`datacontract lint` (the Data Contract CLI's own check, warnings included) passes on every contract."""
    from datacontract.data_contract import DataContract

    path = resources.files("contracts").joinpath(f"{name}.odcs.yaml")
    run = DataContract(data_contract_file=str(path)).lint()
    assert [(c.name, c.result.value, c.reason) for c in run.checks if c.result.value != "passed"] == []
    assert run.result.value == "passed"


@pytest.mark.parametrize("name", CONTRACTS)
def test_every_contract_validates_against_the_odcs_json_schema(name: str) -> None:
    schema = json.loads(resources.files("open_data_contract_standard").joinpath("schema.json").read_text())
    jsonschema.validate(yaml.safe_load(contract_text(name)), schema)


def test_foreign_keys_are_the_contracts_relationships() -> None:
    keys = load_contract("filedrop").foreign_keys()
    assert [(k.table, k.column, k.target) for k in keys] == [
        ("order_items", "order_id", "orders.order_id"),
        ("order_items", "product_id", "products.id"),
    ]
    assert keys[0].rule == "order_items.order_id -> orders.order_id"
    assert load_contract("purchases").foreign_keys() == ()


def test_the_analytics_contract_describes_the_star_schema_and_the_marts() -> None:
    from cart_lakehouse.checks.schemas import arrow_schema

    contract = load_contract("analytics")
    keys = {o.name: contract.primary_key(o.name) for o in contract.document.schema_ or [] if o.name}
    assert keys == {
        "fact_purchases": ("purchase_id",),
        "dim_buyer": ("buyer_id",),
        "dim_product": ("product_key",),
        "dim_date": ("date_key",),
        "sales_performance": ("grain", "period_start"),
        "items_category_performance": ("day", "category", "product_id"),
    }
    for table in keys:  # every column has an Arrow type, so the files can be written as the contract says
        assert arrow_schema(table, contract="analytics").names == [c.name for c in contract.columns(table)]
    assert sorted(k.rule for k in contract.foreign_keys()) == [
        "fact_purchases.buyer_id -> dim_buyer.buyer_id",
        "fact_purchases.date_key -> dim_date.date_key",
        "fact_purchases.product_key -> dim_product.product_key",
    ]
    assert all(c.description for table in keys for c in contract.columns(table))
    nullable = {c.name for c in contract.columns("sales_performance") if not c.required}
    assert nullable == {"revenue_dod_pct", "purchases_dod_pct"}
