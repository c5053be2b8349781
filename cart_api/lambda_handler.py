"""AWS Lambda entry points: ``api_handler`` (API Gateway -> Mangum -> FastAPI) and
``worker_handler`` (SQS event source with ReportBatchItemFailures enabled).

Both are built on the first invocation and reused while the execution environment lives.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from mangum import Mangum

from cart_api.app import create_app
from cart_api.settings import get_settings
from cart_api.worker import PurchaseWorker, SqsRecord, worker_for
from cart_aws.aws import AwsClients


@cache
def _api() -> Mangum:
    return Mangum(create_app(), lifespan="off")


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
