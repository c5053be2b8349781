"""The local worker: long-polls the purchases queue and stores what it receives (``cart-worker``).

In production the same ``PurchaseWorker`` runs as an SQS-triggered Lambda
(``cart_api.lambda_handler.worker_handler``). Stop with SIGTERM or Ctrl-C: each polling thread
finishes the batch it holds, deletes what it stored, and exits.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from types import FrameType

from botocore.exceptions import BotoCoreError, ClientError

from cart_api.settings import Settings
from cart_api.worker import BatchResult, PurchaseWorker, SqsRecord, worker_for
from cart_aws.aws import AwsClients

log = logging.getLogger("cart_api.runner")


@dataclass
class RunnerStats:
    received: int = 0
    stored: int = 0
    dead_lettered: int = 0
    retried: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, received: int, result: BatchResult) -> None:
        with self.lock:
            self.received += received
            self.stored += len(result.stored)
            self.dead_lettered += len(result.dead_lettered)
            self.retried += len(result.retry)


class QueueRunner:
    """Receives batches from the queue, has the worker process them, deletes what it handled."""

    def __init__(
        self,
        settings: Settings,
        clients: AwsClients | None = None,
        *,
        batch_size: int | None = None,
        wait_seconds: int | None = None,
        worker: PurchaseWorker | None = None,
    ) -> None:
        self.settings = settings
        self.clients = clients or AwsClients(settings)
        self.batch_size = batch_size or settings.worker_batch_size
        self.wait_seconds = settings.worker_wait_seconds if wait_seconds is None else wait_seconds
        self.worker = worker or worker_for(settings, self.clients)
        self.queue_url = self.clients.queue_url(settings.purchases_queue)
        self.stats = RunnerStats()

    def poll_once(self) -> BatchResult:
        sqs = self.clients.sqs
        response = sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.batch_size,
            WaitTimeSeconds=self.wait_seconds,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        records = [SqsRecord.from_sqs(m) for m in response.get("Messages", [])]
        if not records:
            return BatchResult()
        result = self.worker.process(records)
        handles = {r.message_id: r.receipt_handle for r in records}
        done = [{"Id": str(i), "ReceiptHandle": handles[mid]} for i, mid in enumerate(result.handled)]
        if len(done) == 1:
            sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=done[0]["ReceiptHandle"])  # type: ignore[arg-type]
        elif done:
            deleted = sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=done)  # type: ignore[arg-type]
            for failure in deleted.get("Failed", []):  # redelivered later, and stored idempotently
                log.warning("could not delete a handled message: %s", failure.get("Message"))
        counts = {r.message_id: r.receive_count for r in records}
        for mid, _ in result.retry:  # back off before SQS delivers it again: 2, 4, 8 ... seconds
            delay = min(2 ** counts[mid], self.settings.visibility_timeout)
            try:
                sqs.change_message_visibility(
                    QueueUrl=self.queue_url, ReceiptHandle=handles[mid] or "", VisibilityTimeout=delay
                )
            except Exception as exc:  # noqa: BLE001 - the queue's own timeout applies instead
                log.debug("could not change visibility: %s", exc)
        self.stats.add(len(records), result)
        return result

    def drain(self, idle_polls: int = 2) -> RunnerStats:
        """Poll until the queue has given nothing ``idle_polls`` times in a row (tests, benchmarks)."""
        idle = 0
        while idle < idle_polls:
            result = self.poll_once()
            idle = 0 if (result.handled or result.retry) else idle + 1
        return self.stats

    def run(self, stop: threading.Event, concurrency: int = 1) -> RunnerStats:
        def loop() -> None:
            while not stop.is_set():
                try:
                    self.poll_once()
                except BotoCoreError as exc:  # the queue unreachable: nothing was received
                    log.warning("polling failed (%s); retrying in 1 s", exc)
                    stop.wait(1.0)
                except ClientError as exc:  # AWS refused or failed the call: one line, not a traceback
                    log.warning("polling failed (%s); retrying in 1 s", exc.response.get("Error", {}).get("Code", exc))
                    stop.wait(1.0)
                except Exception:
                    log.exception("polling failed; retrying in 1 s")
                    stop.wait(1.0)

        threads = [threading.Thread(target=loop, name=f"worker-{i}", daemon=True) for i in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return self.stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cart-worker",
        description=(
            "Store queued purchases in DynamoDB: long-poll the purchases SQS queue, write in "
            "batches, dead-letter invalid messages with the reason. Reads CART_* settings."
        ),
    )
    parser.add_argument("--batch-size", type=int, help="messages per receive (1-10; default CART_WORKER_BATCH_SIZE)")
    parser.add_argument("--concurrency", type=int, help="polling threads (default CART_WORKER_CONCURRENCY)")
    parser.add_argument("--wait", type=int, help="long-poll seconds (default CART_WORKER_WAIT_SECONDS)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings()
    runner = QueueRunner(settings, batch_size=args.batch_size, wait_seconds=args.wait)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("received %s: finishing the current batches", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    concurrency = args.concurrency or settings.worker_concurrency
    log.info("worker polling %s (%d threads, batches of %d)", runner.queue_url, concurrency, runner.batch_size)
    started = time.monotonic()
    stats = runner.run(stop, concurrency)
    log.info(
        "worker stopped after %.0f s: received %d, stored %d, dead-lettered %d, retried %d",
        time.monotonic() - started,
        stats.received,
        stats.stored,
        stats.dead_lettered,
        stats.retried,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
