"""In-memory stand-ins for the API's AWS-backed services, assigned on ``app.state.backend``."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from cart_api.idempotency import Claim
from cart_api.publisher import OutgoingMessage, PublishError


class RecordingPublisher:
    """Keeps what it is asked to publish; ``fail=True`` plays an SNS that does not confirm."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.messages: list[OutgoingMessage] = []

    async def publish(self, message: OutgoingMessage) -> None:
        await asyncio.sleep(0)
        if self.fail:
            raise PublishError("InternalError: SNS is down")
        self.messages.append(message)

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(m.body) for m in self.messages]

    def close(self) -> None:
        pass


class RaisingIdempotencyStore:
    """An idempotency store whose ``claim`` raises the given error (conflict, in progress)."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def claim(self, key: str, fingerprint: str, purchase_id: str, received_at: str) -> Claim:
        raise self.error

    def complete(self, key: str) -> None:
        raise AssertionError("complete() must not be called after a refused claim")

    def release(self, key: str, purchase_id: str) -> None:
        raise AssertionError("release() must not be called after a refused claim")
