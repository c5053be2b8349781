"""A stub of SNS for benchmarks: answers Publish and PublishBatch after a fixed delay, at near-zero CPU.

The ingest benchmark's phase (d) measures the API itself. Against the moto server it cannot: moto
spends milliseconds of CPU on every publish (and delivers to SQS inside the call), and on two cores
that emulator CPU, not the API, is the bottleneck. This stub is still a real network peer: the API's
boto3 client reaches it through ``CART_AWS_ENDPOINT_URL`` exactly as it reaches SNS, so the API's
publisher, botocore's signing, serialising and XML parsing included, runs unchanged. The stub only
reads each request, waits ``delay_ms`` (the AWS round trip it stands in for; 20 ms is typical) on
an event-loop timer, which costs no CPU, and answers in SNS's query-protocol XML. It also answers
STS ``GetCallerIdentity``, which the API calls once to build its topic ARN. Nothing is stored or
delivered: every call succeeds. ``GET /stats`` reports the calls, the messages and the stub's own
CPU seconds, so a benchmark can show the stub's cost; ``POST /delay/<ms>`` changes the delay, so
one stub can serve runs with different delays in turn (botocore only ever posts to ``/``).

HTTP is parsed by hand (request line, headers, ``Content-Length`` body, keep-alive), the smallest
amount of work per call, because what botocore sends is that simple; anything else (a chunked
body) is refused with 501. Run one with ``python -m cart_dev.sns_stub --delay-ms 20``; in Python,
``with SnsStub(delay_ms=20) as stub:`` runs it as a child process and gives ``stub.url``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import selectors
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from types import TracebackType
from typing import Any
from urllib.parse import unquote_plus

from cart_dev.local_aws import stop_process_group

ACCOUNT = "123456789012"
SNS_XMLNS = "http://sns.amazonaws.com/doc/2010-03-31/"
STS_XMLNS = "https://sts.amazonaws.com/doc/2011-06-15/"
ACTION = re.compile(rb"(?:^|&)Action=([^&]*)")
BATCH_ID = re.compile(rb"(?:^|&)PublishBatchRequestEntries\.member\.\d+\.Id=([^&]*)")
ANSWERED = ("Publish", "PublishBatch", "GetCallerIdentity")


class StubServer:
    """The stub's HTTP server on an event loop: ``await StubServer(delay_ms).start(host, port)``."""

    def __init__(self, delay_ms: float) -> None:
        self.delay = delay_ms / 1000
        self.calls: Counter[str] = Counter()
        self.messages = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> StubServer:
        self._server = await asyncio.start_server(self._serve, host, port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def serve_forever(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()

    def stats(self) -> dict[str, Any]:
        return {
            "calls": dict(self.calls),
            "messages": self.messages,
            "cpu_seconds": time.process_time(),
            "delay_ms": self.delay * 1000,
        }

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return  # the client closed its keep-alive connection
                request_line, *header_lines = head[:-4].split(b"\r\n")
                method, target, _ = request_line.split(b" ", 2)
                headers = {}
                for line in header_lines:
                    name, _, value = line.partition(b":")
                    headers[name.strip().lower()] = value.strip()
                if b"transfer-encoding" in headers:
                    await self._answer(
                        writer, 501, *_error("NotImplemented", "the SNS stub reads Content-Length bodies only")
                    )
                    return
                body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
                status, content_type, payload = await self._handle(method, target, body)
                await self._answer(writer, status, content_type, payload)
                if headers.get(b"connection", b"").lower() == b"close":
                    return
        except (ConnectionError, ValueError, asyncio.LimitOverrunError):
            return
        finally:
            writer.close()

    async def _handle(self, method: bytes, target: bytes, body: bytes) -> tuple[int, bytes, bytes]:
        if method == b"GET" and target == b"/stats":
            return 200, b"application/json", json.dumps(self.stats()).encode()
        if method == b"POST" and target.startswith(b"/delay/"):
            try:
                self.delay = max(0.0, float(target.removeprefix(b"/delay/")) / 1000)
            except ValueError:
                return 400, *_error("InvalidParameter", "POST /delay/<milliseconds>, a number")
            return 200, b"application/json", json.dumps(self.stats()).encode()
        found = ACTION.search(body)
        action = unquote_plus(found.group(1).decode()) if found else ""
        if action not in ANSWERED:
            return 400, *_error(
                "InvalidAction",
                f"the SNS stub answers {', '.join(ANSWERED)} only, not {action or 'a request without an Action'}",
            )
        if self.delay:
            await asyncio.sleep(self.delay)  # the round trip: a timer, no CPU
        self.calls[action] += 1
        request_id = uuid.uuid4()
        if action == "Publish":
            self.messages += 1
            xml = (
                f'<PublishResponse xmlns="{SNS_XMLNS}"><PublishResult><MessageId>{uuid.uuid4()}</MessageId>'
                f"</PublishResult><ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>"
                "</PublishResponse>"
            )
        elif action == "PublishBatch":
            ids = [unquote_plus(i.decode()) for i in BATCH_ID.findall(body)]
            self.messages += len(ids)
            members = "".join(f"<member><Id>{i}</Id><MessageId>{uuid.uuid4()}</MessageId></member>" for i in ids)
            xml = (
                f'<PublishBatchResponse xmlns="{SNS_XMLNS}"><PublishBatchResult><Successful>{members}'
                "</Successful><Failed/></PublishBatchResult><ResponseMetadata>"
                f"<RequestId>{request_id}</RequestId></ResponseMetadata></PublishBatchResponse>"
            )
        else:
            xml = (
                f'<GetCallerIdentityResponse xmlns="{STS_XMLNS}"><GetCallerIdentityResult>'
                f"<Arn>arn:aws:iam::{ACCOUNT}:user/sns-stub</Arn><UserId>AIDASNSSTUB</UserId>"
                f"<Account>{ACCOUNT}</Account></GetCallerIdentityResult><ResponseMetadata>"
                f"<RequestId>{request_id}</RequestId></ResponseMetadata></GetCallerIdentityResponse>"
            )
        return 200, b"text/xml", xml.encode()

    @staticmethod
    async def _answer(writer: asyncio.StreamWriter, status: int, content_type: bytes, payload: bytes) -> None:
        reason = {200: b"OK", 400: b"Bad Request", 501: b"Not Implemented"}.get(status, b"Error")
        writer.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s"
            % (status, reason, content_type, len(payload), payload)
        )
        await writer.drain()


def _error(code: str, message: str) -> tuple[bytes, bytes]:
    """A query-protocol error, as SNS sends it (botocore raises it as ClientError with ``code``)."""
    xml = (
        f'<ErrorResponse xmlns="{SNS_XMLNS}"><Error><Type>Sender</Type><Code>{code}</Code>'
        f"<Message>{message}</Message></Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    )
    return b"text/xml", xml.encode()


class SnsStub:
    """The stub in its own process (its event loop shares no GIL with the caller's load generator).

    The child binds a free port itself and reports it, so there is no race for the port.
    """

    def __init__(self, delay_ms: float = 20.0, host: str = "127.0.0.1") -> None:
        self.delay_ms = delay_ms
        self.host = host
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> SnsStub:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cart_dev.sns_stub",
                "--host",
                self.host,
                "--port",
                "0",
                "--delay-ms",
                str(self.delay_ms),
            ],
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        assert self.process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            if not selector.select(timeout):
                self.stop()
                raise TimeoutError(f"the SNS stub did not report its port within {timeout:.0f} s")
        line = self.process.stdout.readline().decode()
        if not line.startswith("listening on "):
            code = self.process.wait(timeout=10)
            raise RuntimeError(f"the SNS stub did not start (exit code {code}); its error is above")
        self.port = int(line.rsplit(":", 1)[1])
        return self

    def stats(self) -> dict[str, Any]:
        """Calls per action, messages published, the stub's CPU seconds so far and its delay."""
        with urllib.request.urlopen(f"{self.url}/stats", timeout=10) as response:
            stats: dict[str, Any] = json.load(response)
            return stats

    def set_delay(self, delay_ms: float) -> None:
        """Answer every later call after ``delay_ms`` (calls already waiting keep theirs)."""
        request = urllib.request.Request(f"{self.url}/delay/{delay_ms:g}", method="POST")
        urllib.request.urlopen(request, timeout=10).close()
        self.delay_ms = delay_ms

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stop_process_group(self.process)
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> SnsStub:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


async def _run(host: str, port: int, delay_ms: float) -> None:
    server = await StubServer(delay_ms).start(host, port)
    print(f"listening on http://{host}:{server.port}", flush=True)
    await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cart_dev.sns_stub",
        description=(
            "A stub SNS endpoint for benchmarks: answers Publish, PublishBatch (and STS "
            "GetCallerIdentity) after a fixed delay, storing and delivering nothing. Point "
            "CART_AWS_ENDPOINT_URL at it. GET /stats reports calls, messages and its CPU seconds."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 (default): a free port, printed on start")
    parser.add_argument("--delay-ms", type=float, default=20.0, help="delay before each answer (default 20 ms)")
    args = parser.parse_args(argv)
    if args.delay_ms < 0:
        parser.error("--delay-ms must be 0 or more")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(args.host, args.port, args.delay_ms))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
