"""Publishing accepted purchases to SNS, grouping concurrent requests into PublishBatch calls.

A request's ``publish`` returns only after SNS has confirmed its message, so the API never
answers 202 for a purchase that is not durably queued. Under concurrent load, requests that
arrive while ``max_in_flight`` calls are already out wait in a queue and leave together in the
next call (up to 10 entries, SNS's limit): at low load nothing waits, at high load each SNS
round trip carries up to 10 purchases.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient

SNS_MAX_BATCH_ENTRIES = 10
SNS_MAX_BATCH_BYTES = 262_144


class PublishError(RuntimeError):
    """SNS did not confirm the message; the purchase must not be reported as accepted."""


@dataclass
class OutgoingMessage:
    body: str
    attributes: dict[str, str] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.body.encode()) + sum(len(k) + len(v) for k, v in self.attributes.items())

    def sns_attributes(self) -> dict[str, Any]:
        return {k: {"DataType": "String", "StringValue": v} for k, v in self.attributes.items()}


class Publisher(Protocol):
    async def publish(self, message: OutgoingMessage) -> None: ...

    def close(self) -> None: ...


@dataclass
class _Pending:
    message: OutgoingMessage
    future: asyncio.Future[None]


@dataclass
class PublisherStats:
    calls: int = 0
    messages: int = 0
    failures: int = 0

    @property
    def mean_batch(self) -> float:
        return self.messages / self.calls if self.calls else 0.0


class SnsPublisher:
    """Publishes to one topic; ``batch_size=1`` makes one ``Publish`` call per message."""

    def __init__(
        self,
        sns: SNSClient,
        topic_arn: str | Callable[[], str],
        *,
        batch_size: int = SNS_MAX_BATCH_ENTRIES,
        max_in_flight: int = 8,
        max_partial_in_flight: int = 1,
    ) -> None:
        if not 1 <= batch_size <= SNS_MAX_BATCH_ENTRIES:
            raise ValueError(f"batch_size must be 1..{SNS_MAX_BATCH_ENTRIES}, not {batch_size}")
        self._sns = sns
        self._topic = topic_arn
        self.batch_size = batch_size
        self.max_in_flight = max_in_flight
        self.max_partial_in_flight = max_partial_in_flight
        self._executor = ThreadPoolExecutor(max_in_flight, thread_name_prefix="sns-publish")
        self._pending: deque[_Pending] = deque()
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats = PublisherStats()

    @property
    def topic_arn(self) -> str:
        if callable(self._topic):
            self._topic = self._topic()
        return self._topic

    async def publish(self, message: OutgoingMessage) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(message, future))
        self._dispatch()
        await future

    def _dispatch(self) -> None:
        """Send what is pending: full batches at once (up to ``max_in_flight`` calls), a partial
        batch only while fewer than ``max_partial_in_flight`` calls are out. Under load, requests
        gather while a call is in flight (at most one round trip), so each call carries up to ten
        purchases; when quiet, a lone request is sent at once."""
        while self._pending and self._in_flight < self.max_in_flight:
            if len(self._pending) < self.batch_size and self._in_flight >= self.max_partial_in_flight:
                return  # the next completed call dispatches again
            batch = [self._pending.popleft()]
            size = batch[0].message.size
            while self._pending and len(batch) < self.batch_size:
                nxt = self._pending[0].message.size
                if size + nxt > SNS_MAX_BATCH_BYTES:
                    break
                batch.append(self._pending.popleft())
                size += nxt
            self._in_flight += 1
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        try:
            failed = await loop.run_in_executor(self._executor, self._call, [p.message for p in batch])
        except (BotoCoreError, ClientError) as exc:
            failed = {i: f"{type(exc).__name__}: {exc}" for i in range(len(batch))}
        finally:
            self._in_flight -= 1
        self.stats.calls += 1
        self.stats.messages += len(batch)
        self.stats.failures += len(failed)
        for i, pending in enumerate(batch):
            if pending.future.done():  # the request was cancelled (client went away)
                continue
            if i in failed:
                pending.future.set_exception(PublishError(failed[i]))
            else:
                pending.future.set_result(None)
        self._dispatch()

    def _call(self, messages: list[OutgoingMessage]) -> dict[int, str]:
        """One SNS call; returns the failed entries' positions with the reason."""
        if self.batch_size == 1:
            (message,) = messages
            self._sns.publish(TopicArn=self.topic_arn, Message=message.body, MessageAttributes=message.sns_attributes())
            return {}
        response = self._sns.publish_batch(
            TopicArn=self.topic_arn,
            PublishBatchRequestEntries=[
                {"Id": str(i), "Message": m.body, "MessageAttributes": m.sns_attributes()}
                for i, m in enumerate(messages)
            ],
        )
        return {int(f["Id"]): f"{f.get('Code')}: {f.get('Message', '')}" for f in response.get("Failed", [])}

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=False)
