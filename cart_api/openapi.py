"""The OpenAPI document says what the API enforces: every error response is documented as RFC 9457
``application/problem+json`` with the problem-details schema, the headers the API always sends are
documented, and FastAPI's default 422 (``HTTPValidationError``, which this API never sends) is
replaced by the problem it does send.

Routes declare their error responses with :func:`problem`; :func:`install` then rewrites the
generated document once, so an error response FastAPI adds on its own (a 422 for a path or query
parameter) is documented as the problem the exception handlers in ``cart_api/problems.py`` answer.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from cart_api.models import Problem
from cart_api.problems import PROBLEM_JSON

_REF = "#/components/schemas/{model}"
# FastAPI's own validation-error shapes: the API answers problem details instead
_FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")

RETRY_AFTER: dict[str, Any] = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}


def problem(
    description: str, *, model: type[Problem] = Problem, headers: dict[str, Any] | None = None
) -> dict[str, Any]:
    """An error response for a route's ``responses``: problem details, with the headers it carries."""
    doc: dict[str, Any] = {"model": model, "description": description}
    if headers:
        doc["headers"] = headers
    return doc


def _is_error(status: str) -> bool:
    return status == "default" or status[:1] in ("4", "5")


def as_problem_details(schema: dict[str, Any]) -> dict[str, Any]:
    """Document every error response of ``schema`` as problem+json (in place; idempotent)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    problem_schema = Problem.model_json_schema(ref_template=_REF)
    for name, definition in problem_schema.pop("$defs", {}).items():
        components.setdefault(name, definition)
    components.setdefault(Problem.__name__, problem_schema)
    default_ref = _REF.format(model=Problem.__name__)
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            for status, response in operation.get("responses", {}).items():
                if not _is_error(status):
                    continue
                content = response.get("content", {})
                declared = next(
                    (content[m].get("schema") for m in (PROBLEM_JSON, "application/json") if m in content), None
                )
                if not declared or declared.get("$ref", "").rsplit("/", 1)[-1] in _FASTAPI_VALIDATION:
                    declared = {"$ref": default_ref}
                    if status == "422":
                        response["description"] = (
                            "A parameter breaks its documented limits (each one and the reason are listed)"
                        )
                response["content"] = {PROBLEM_JSON: {"schema": declared}}
    text = repr(schema["paths"])
    for name in _FASTAPI_VALIDATION:
        if _REF.format(model=name) not in text:
            components.pop(name, None)
    return schema


def install(app: FastAPI) -> None:
    """Serve ``app``'s generated OpenAPI document with its error responses as problem details."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        return as_problem_details(generate())  # FastAPI caches the document; rewriting it again is a no-op

    app.openapi = openapi  # type: ignore[method-assign]
