"""``Idempotency-Key`` support: a retried request returns the first one's ``purchase_id`` and
publishes nothing new.

Records live in a DynamoDB table with a TTL. A request first *claims* its key with a
conditional put; it then publishes and marks the record completed, or releases it if the
publish failed, so the client's retry can go through at once. A claim whose holder died (no
completion within the lock time) may be taken over. Either way the retry keeps the first
purchase id and receipt time, so a republished message is identical and is stored once.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


class IdempotencyConflict(Exception):
    """The key was used before with a different request body (422)."""


class IdempotencyInProgress(Exception):
    """A request with the same key is being processed right now (409)."""


class IdempotencyUnavailable(Exception):
    """The idempotency table did not answer: nothing was claimed, published or accepted (503)."""


@dataclass(frozen=True)
class Claim:
    purchase_id: str
    received_at: str
    replay: bool  # True: the request completed before; answer as then, publish nothing


def fingerprint(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class IdempotencyStore(Protocol):
    def claim(self, key: str, fingerprint: str, purchase_id: str, received_at: str) -> Claim: ...

    def complete(self, key: str) -> None: ...

    def release(self, key: str, purchase_id: str) -> None: ...


def _conditional_failure(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class DynamoIdempotencyStore:
    def __init__(self, dynamodb: DynamoDBClient, table: str, *, ttl_seconds: int, lock_seconds: int) -> None:
        self._ddb = dynamodb
        self._table = table
        self._ttl = ttl_seconds
        self._lock = lock_seconds

    def claim(self, key: str, fingerprint: str, purchase_id: str, received_at: str) -> Claim:
        now = int(time.time())
        try:
            self._ddb.put_item(
                TableName=self._table,
                Item={
                    "idempotency_key": {"S": key},
                    "fingerprint": {"S": fingerprint},
                    "purchase_id": {"S": purchase_id},
                    "received_at": {"S": received_at},
                    "state": {"S": "pending"},
                    "locked_until": {"N": str(now + self._lock)},
                    "expires_at": {"N": str(now + self._ttl)},
                },
                # an expired record (TTL deletion lags by up to days) counts as absent
                ConditionExpression="attribute_not_exists(idempotency_key) OR expires_at < :now",
                ExpressionAttributeValues={":now": {"N": str(now)}},
            )
            return Claim(purchase_id, received_at, replay=False)
        except ClientError as exc:
            if not _conditional_failure(exc):
                raise
        old = self._ddb.get_item(TableName=self._table, Key={"idempotency_key": {"S": key}}, ConsistentRead=True)
        item = old.get("Item")
        if item is None:  # expired and deleted between our put and get: claim again
            return self.claim(key, fingerprint, purchase_id, received_at)
        if item["fingerprint"]["S"] != fingerprint:
            raise IdempotencyConflict(key)
        first = Claim(item["purchase_id"]["S"], item["received_at"]["S"], replay=True)
        if item["state"]["S"] == "completed":
            return first
        if int(item["locked_until"]["N"]) > now:
            raise IdempotencyInProgress(key)
        try:  # the holder died or released the claim: take it over, same purchase
            self._ddb.update_item(
                TableName=self._table,
                Key={"idempotency_key": {"S": key}},
                UpdateExpression="SET locked_until = :until",
                ConditionExpression="#s = :pending AND locked_until = :seen",
                ExpressionAttributeNames={"#s": "state"},
                ExpressionAttributeValues={
                    ":until": {"N": str(now + self._lock)},
                    ":pending": {"S": "pending"},
                    ":seen": item["locked_until"],
                },
            )
        except ClientError as exc:
            if _conditional_failure(exc):
                raise IdempotencyInProgress(key) from None
            raise
        return Claim(first.purchase_id, first.received_at, replay=False)

    def complete(self, key: str) -> None:
        self._ddb.update_item(
            TableName=self._table,
            Key={"idempotency_key": {"S": key}},
            UpdateExpression="SET #s = :done REMOVE locked_until",
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues={":done": {"S": "completed"}},
        )

    def release(self, key: str, purchase_id: str) -> None:
        """The publish failed: unlock the claim so the client's retry takes it over at once.

        The record keeps its purchase id and receipt time: if the failed publish reached SNS
        after all, the retry's message is identical and the worker stores one item.
        """
        try:
            self._ddb.update_item(
                TableName=self._table,
                Key={"idempotency_key": {"S": key}},
                UpdateExpression="SET locked_until = :zero",
                ConditionExpression="purchase_id = :pid AND #s = :pending",
                ExpressionAttributeNames={"#s": "state"},
                ExpressionAttributeValues={
                    ":zero": {"N": "0"},
                    ":pid": {"S": purchase_id},
                    ":pending": {"S": "pending"},
                },
            )
        except ClientError as exc:
            if not _conditional_failure(exc):
                raise
