"""AWS Lambda entry points: ``api_handler`` (API Gateway -> Mangum -> FastAPI) and
``worker_handler`` (SQS event source with ReportBatchItemFailures enabled).

Both are built on the first invocation and reused while the execution environment lives.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from mangum import Mangum
from starlette.types import ASGIApp, Receive, Scope, Send

from cart_api.app import create_app, settle
from cart_api.settings import get_settings
from cart_api.worker import PurchaseWorker, SqsRecord, worker_for
from cart_aws.aws import AwsClients


class StagePrefix:
    """Sets the ASGI ``root_path`` to the prefix the client's URL has before the API's own path.

    A REST API's event gives ``path`` without the stage (``/purchases``) while the client called
    ``https://<id>.execute-api.<region>.amazonaws.com/prod/purchases``: Mangum leaves ``root_path``
    empty, so the app's links (the 202's ``status_url`` and ``Location``, ``/docs``' OpenAPI URL)
    would miss ``/prod``. ``requestContext.path`` is the path as the client sent it (with the stage,
    or a custom domain's base path, or neither), so the prefix is what it has before ``path``.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            prefix = stage_prefix(scope.get("aws.event") or {}, scope["path"])
            if prefix:
                # ASGI: path includes root_path (Starlette routes on what follows it)
                scope = {**scope, "root_path": prefix, "path": prefix + scope["path"]}
        await self.app(scope, receive, send)


def stage_prefix(event: dict[str, Any], path: str) -> str:
    """``/prod`` for a REST API event of ``/purchases`` called as ``/prod/purchases``; ``""`` when
    the client's path is the app's (an HTTP API's ``$default`` stage, a custom domain without base path)."""
    called = (event.get("requestContext") or {}).get("path")
    if not isinstance(called, str) or "httpMethod" not in event:  # a REST API (payload 1.0) event only
        return ""
    called, own = called.rstrip("/"), path.rstrip("/")
    if own and not called.endswith(own):
        return ""
    return called[: len(called) - len(own)]


@cache
def _api() -> Mangum:
    app = create_app()
    settle(app.state.backend)  # lifespan is off: the execution environment's init settles the heap
    return Mangum(StagePrefix(app), lifespan="off")


@cache
def _worker() -> PurchaseWorker:
    settings = get_settings()
    return worker_for(settings, AwsClients(settings))


def api_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _api()(event, context)


def worker_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Store a batch; the records not handled are reported so only they are retried."""
    records = [SqsRecord.from_lambda(r) for r in event.get("Records", [])]
    result = _worker().process(records)
    return {"batchItemFailures": [{"itemIdentifier": mid} for mid, _ in result.retry]}
