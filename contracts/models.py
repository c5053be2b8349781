"""Pydantic models derived from a data contract, so API and worker validation cannot drift.

Every constraint comes from the contract: types and nullability, string lengths and patterns,
numeric ranges and decimals (``multipleOf``), date minimums, and the custom
``maxDaysAfterReceipt`` rule. JSON types are taken strictly: a number sent as a string, a bool
sent as an integer, or a timestamp sent as a date is a validation error, not a coercion.
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
                Field(**meta),
            ]
        case "integer":
            return Annotated[int, Strict(), Field(**meta, **_bounds(o))]
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
            return Annotated[
                date,
                BeforeValidator(_iso_date),
                Field(**meta, json_schema_extra={"format": "date"}, **_bounds(o, date.fromisoformat)),
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
