"""Pydantic models derived from a data contract, so API and worker validation cannot drift.

Every constraint comes from the contract: types and nullability, string lengths, patterns and
formats, numeric ranges and decimals (``multipleOf``), date minimums, and the custom
``maxDaysAfterReceipt`` rule. JSON types are taken strictly: a number sent as a string, a bool
sent as an integer, or a timestamp sent as a date is a validation error, not a coercion. An
integer is an integer as JSON Schema counts it, so ``3.0`` is ``3`` (``2.5`` is refused).

The models' JSON Schema (the API's OpenAPI document) carries every limit JSON Schema can express;
the date bounds it cannot express for strings are stated in the field's description, generated
from the same options (``date_rules``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    Strict,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    create_model,
    field_validator,
)
from pydantic_core import PydanticCustomError

from contracts import Column, Contract

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _json_number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise PydanticCustomError("number_type", "Input should be a JSON number")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PydanticCustomError("finite_number", "Input should be a finite number")
        return Decimal(repr(value))  # shortest repr round-trips: 129.9 -> Decimal("129.9")
    return value


def _json_integer(value: Any) -> Any:
    # JSON Schema's "integer" is any number with a zero fractional part, so 3.0 is 3; anything
    # else (2.5, "3", true) goes on to the strict int check and is refused there as int_type
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _iso_date(value: Any) -> Any:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and _ISO_DATE.match(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise PydanticCustomError("date_invalid", "Input should be a valid calendar date") from None
    raise PydanticCustomError("date_format", "Input should be a date in yyyy-MM-dd format")


def _decimal_places(multiple_of: Any) -> int | None:
    if multiple_of is None:
        return None
    exponent = Decimal(str(multiple_of)).normalize().as_tuple().exponent
    return max(0, -int(exponent))


_JSON_NUMBER_KEYWORDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")


def _bounds(options: dict[str, Any], convert: Callable[[Any], Any] = lambda v: v) -> dict[str, Any]:
    names = {"minimum": "ge", "maximum": "le", "exclusiveMinimum": "gt", "exclusiveMaximum": "lt"}
    return {pyd: convert(options[odcs]) for odcs, pyd in names.items() if odcs in options}


def date_rules(column: Column) -> str:
    """The date bounds of a date column, in words: JSON Schema cannot bound a date string."""
    o, rules = column.options, []
    if "minimum" in o:
        rules.append(f"on or after {o['minimum']}")
    if "maximum" in o:
        rules.append(f"on or before {o['maximum']}")
    if "maxDaysAfterReceipt" in column.custom:
        days = int(column.custom["maxDaysAfterReceipt"])
        rules.append(f"not more than {days} day(s) after the day it is received (UTC)")
    return f"Must be {' and '.join(rules)}." if rules else ""


def annotation_for(column: Column) -> Any:
    """The pydantic type (with constraints) of one contract column."""
    o = column.options
    meta: dict[str, Any] = {"description": column.description}
    if column.examples:
        meta["examples"] = list(column.examples)
    match column.logical_type:
        case "string":
            return Annotated[
                str,
                Strict(),
                StringConstraints(
                    min_length=o.get("minLength"), max_length=o.get("maxLength"), pattern=o.get("pattern")
                ),
                Field(**meta, json_schema_extra={"format": o["format"]} if "format" in o else None),
            ]
        case "integer":
            # the bounds before the validator, so they constrain the int schema (and show in its JSON Schema)
            return Annotated[int, Strict(), Field(**meta, **_bounds(o)), BeforeValidator(_json_integer)]
        case "number":
            bounds = _bounds(o, lambda v: v if isinstance(v, int) else Decimal(str(v)))
            json_schema = {"type": "number", **meta}
            json_schema.update({k: o[k] for k in _JSON_NUMBER_KEYWORDS if k in o})
            return Annotated[
                Decimal,
                BeforeValidator(_json_number),
                PlainSerializer(float, return_type=float, when_used="json"),
                Field(**bounds, decimal_places=_decimal_places(o.get("multipleOf"))),
                WithJsonSchema(json_schema),
            ]
        case "date":
            rules = date_rules(column)
            json_schema = {
                "type": "string",
                "format": "date",
                **meta,
                "description": f"{column.description} {rules}".strip(),
            }
            return Annotated[
                date,
                BeforeValidator(_iso_date),
                Field(**_bounds(o, date.fromisoformat)),
                WithJsonSchema(json_schema),
            ]
        case "timestamp":
            base = AwareDatetime if o.get("timezone") else datetime
            return Annotated[base, Field(**meta)]
        case "boolean":
            return Annotated[bool, Strict(), Field(**meta)]
    raise ValueError(f"column {column.name!r}: logical type {column.logical_type!r} is not supported")


def _max_days_after(column: Column, days: int, reference: str | None) -> Any:
    """Validator for the custom ``maxDaysAfterReceipt`` rule of a date column.

    The reference is the receipt timestamp when the model has it (the worker re-validates a
    stored purchase against the day it was received), otherwise today in UTC (the API).
    """

    def check(cls: type[BaseModel], value: date, info: ValidationInfo) -> date:
        if reference is not None:
            received = info.data.get(reference)
            if not isinstance(received, datetime):
                return value  # the reference itself is invalid and already reported
            ref_day = received.astimezone(UTC).date()
        else:
            ref_day = datetime.now(UTC).date()
        if value > ref_day + timedelta(days=days):
            raise PydanticCustomError(
                "date_too_far_in_future",
                "Date should not be more than {days} day(s) after the day of receipt ({reference})",
                {"days": days, "reference": ref_day.isoformat()},
            )
        return value

    return field_validator(column.name)(check)


def contract_model(
    contract: Contract,
    model_name: str,
    *,
    sources: Iterable[str] | None = None,
    schema_object: str | None = None,
    doc: str | None = None,
) -> type[BaseModel]:
    """A pydantic model of a contract's schema object, unknown fields forbidden.

    ``sources`` limits the model to columns set by those producers (``{"client"}`` for the API
    request). System columns come first so rules that refer to them can see their value.
    """
    wanted = set(sources) if sources is not None else None
    columns = [c for c in contract.columns(schema_object) if wanted is None or c.source in wanted]
    columns.sort(key=lambda c: c.source != "system")
    names = [c.name for c in columns]
    reference = next((c.name for c in columns if c.logical_type == "timestamp" and c.name == "received_at"), None)
    fields: dict[str, Any] = {}
    validators: dict[str, Any] = {}
    for col in columns:
        annotation = annotation_for(col)
        fields[col.name] = (annotation, ...) if col.required else (annotation | None, None)
        if col.logical_type == "date" and "maxDaysAfterReceipt" in col.custom:
            days = int(col.custom["maxDaysAfterReceipt"])
            validators[f"check_{col.name}_max_days"] = _max_days_after(
                col, days, reference if reference in names else None
            )
    model: type[BaseModel] = create_model(
        model_name,
        __config__=ConfigDict(extra="forbid", title=model_name, frozen=True),
        __doc__=doc or f"{contract.name} {contract.version}: {', '.join(names)}",
        __validators__=validators,
        **fields,
    )
    return model
