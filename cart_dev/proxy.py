"""A fault proxy in front of the local AWS: latency, throttling, outages and broken connections.

moto answers every call in a few milliseconds, never throttles and keeps no state across a
restart, so on its own it cannot show what batching buys on AWS or what the system does when
AWS misbehaves. ``FaultProxy`` forwards HTTP to the moto server and, per call, can

- add a delay (``delay_ms``, a typical AWS round trip is about 20 ms),
- answer a share of calls with the service's own throttling error, in that service's wire
  format so that botocore parses and retries it as it would on AWS
  (DynamoDB ``ProvisionedThroughputExceededException``, SQS ``RequestThrottled``, SNS
  ``Throttling``, S3 ``SlowDown``),
- answer calls with 503 ``ServiceUnavailable`` (an outage of one service),
- reset the connection, before the call reaches AWS or after (the call took effect, the client
  never hears), and
- hold a call without ever answering it (``hang``: the client waits, as for a process that is
  killed in the middle of a call), and
- refuse connections altogether (the local AWS is unreachable), until ``accept()``.

Faults are chosen per service and operation with ``only="dynamodb"`` or
``only="dynamodb:BatchWriteItem"``, read from the request itself (SigV4 credential scope,
``X-Amz-Target`` or the ``Action`` form field). Choices are drawn from a seeded generator, so a
run can be repeated. ``stats`` counts what was forwarded and what was injected.

Used by the ingest benchmark (latency) and by the fault-injection tests; ``cart-fault-proxy``
runs one in the foreground. It is a test utility: it speaks HTTP/1.1 to clients (what botocore
sends) and holds each body in memory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs

import h11
import httpx

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "expect"}
KINDS = ("throttle", "unavailable", "reset", "reset_after", "hang")


@dataclass(frozen=True)
class Call:
    """What one request is, as far as faults are concerned."""

    service: str
    operation: str

    def matches(self, only: str | None) -> bool:
        if not only:
            return True
        service, _, operation = only.partition(":")
        return self.service == service.lower() and (not operation or self.operation == operation)


def identify(method: str, target: str, headers: dict[str, str], body: bytes) -> Call:
    """The AWS service and operation of a request, from what botocore puts on the wire."""
    service = "unknown"
    auth = headers.get("authorization", "")
    if "Credential=" in auth:
        scope = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/")
        if len(scope) >= 4:
            service = scope[3].lower()
    operation = ""
    if amz_target := headers.get("x-amz-target"):
        operation = amz_target.rsplit(".", 1)[-1]
    elif headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        action = parse_qs(body.decode("utf-8", "replace")).get("Action")
        operation = action[0] if action else ""
    elif "?" in target:
        action = parse_qs(target.split("?", 1)[1]).get("Action")
        operation = action[0] if action else ""
    return Call(service, operation or method.upper())


@dataclass
class Rule:
    kind: str
    share: float
    only: str | None
    remaining: int | None  # None: until cleared

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault {self.kind!r}; expected one of {', '.join(KINDS)}")
        if not 0 <= self.share <= 1:
            raise ValueError(f"share must be between 0 and 1, got {self.share}")


@dataclass
class ProxyStats:
    forwarded: Counter[str] = field(default_factory=Counter)  # "service:Operation" -> calls
    injected: Counter[str] = field(default_factory=Counter)  # "kind service:Operation" -> calls
    connections: int = 0

    def total_injected(self, kind: str | None = None) -> int:
        return sum(n for key, n in self.injected.items() if kind is None or key.split(" ", 1)[0] == kind)


def error_response(call: Call, kind: str, headers: dict[str, str]) -> tuple[int, list[tuple[str, str]], bytes]:
    """A throttling or unavailable answer in the wire format the service's client expects."""
    request_id = str(uuid.uuid4())
    throttled = kind == "throttle"
    content_type = headers.get("content-type", "")
    if call.service == "s3":
        code, status = ("SlowDown", 503) if throttled else ("ServiceUnavailable", 503)
        xml = (
            f"<Error><Code>{code}</Code><Message>Injected by the fault proxy</Message>"
            f"<RequestId>{request_id}</RequestId></Error>"
        )
        return status, [("content-type", "application/xml")], xml.encode()
    if "json" in content_type:
        if call.service == "dynamodb":
            code = (
                "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"
                if throttled
                else "com.amazon.coral.availability#ServiceUnavailableException"
            )
        elif call.service == "sqs":
            code = "com.amazonaws.sqs#RequestThrottled" if throttled else "com.amazonaws.sqs#ServiceUnavailable"
        else:
            code = "ThrottlingException" if throttled else "ServiceUnavailableException"
        body = f'{{"__type":"{code}","message":"Injected by the fault proxy"}}'
        status = 400 if throttled else 503
        return status, [("content-type", content_type), ("x-amzn-requestid", request_id)], body.encode()
    # query protocol (SNS, CloudWatch) and anything else: XML ErrorResponse
    code = "Throttling" if throttled else "ServiceUnavailable"
    xml = (
        "<ErrorResponse><Error><Type>" + ("Sender" if throttled else "Receiver") + f"</Type><Code>{code}</Code>"
        f"<Message>Injected by the fault proxy</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
    )
    return (400 if throttled else 503), [("content-type", "text/xml")], xml.encode()


class FaultProxy:
    """An HTTP proxy to ``upstream`` on a loopback port, run by an event loop in a background thread.

    ``FaultProxy(moto.endpoint_url, delay_ms=20).start()``; point clients at ``proxy.url``;
    inject with ``throttle``, ``unavailable``, ``reset``, ``hang``, ``refuse``; undo with ``clear`` and
    ``accept``; ``stop`` at the end (or use it as a context manager).
    """

    def __init__(
        self, upstream: str, delay_ms: float = 0.0, seed: int = 0, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.delay_ms = delay_ms
        self.host = host
        self.port = port
        self.stats = ProxyStats()
        self._rules: list[Rule] = []
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._client: httpx.AsyncClient | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # --- faults -------------------------------------------------------------------------------

    def throttle(self, share: float = 1.0, only: str | None = None, count: int | None = None) -> FaultProxy:
        """Answer ``share`` of matching calls (the next ``count`` of them, if given) with throttling."""
        return self._add(Rule("throttle", share, only, count))

    def unavailable(self, share: float = 1.0, only: str | None = None, count: int | None = None) -> FaultProxy:
        """Answer matching calls with 503 ServiceUnavailable."""
        return self._add(Rule("unavailable", share, only, count))

    def reset(
        self, count: int | None = 1, only: str | None = None, after_forward: bool = False, share: float = 1.0
    ) -> FaultProxy:
        """Reset the connection of the next ``count`` matching calls; ``after_forward``: once AWS has
        handled them, so the call takes effect and the client never hears."""
        return self._add(Rule("reset_after" if after_forward else "reset", share, only, count))

    def hang(self, only: str | None = None, count: int | None = None) -> FaultProxy:
        """Hold matching calls unanswered and unforwarded until the client gives up or dies."""
        return self._add(Rule("hang", 1.0, only, count))

    def clear(self) -> FaultProxy:
        """Remove every fault rule (the delay stays)."""
        with self._lock:
            self._rules.clear()
        return self

    def refuse(self) -> FaultProxy:
        """Stop listening and drop open connections: the local AWS is unreachable until ``accept``."""
        self._call_soon(self._close_listener(drop_connections=True))
        return self

    def accept(self) -> FaultProxy:
        """Listen again on the same port after ``refuse``."""
        self._call_soon(self._open_listener())
        return self

    def _add(self, rule: Rule) -> FaultProxy:
        with self._lock:
            self._rules.append(rule)
        return self

    def _fault_for(self, call: Call) -> str | None:
        with self._lock:
            for rule in self._rules:
                if rule.remaining == 0 or not call.matches(rule.only):
                    continue
                if rule.share < 1 and self._random.random() >= rule.share:
                    continue
                if rule.remaining is not None:
                    rule.remaining -= 1
                self.stats.injected[f"{rule.kind} {call.service}:{call.operation}"] += 1
                return rule.kind
            self.stats.forwarded[f"{call.service}:{call.operation}"] += 1
            return None

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> FaultProxy:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._open_listener())
                self._client = httpx.AsyncClient(
                    base_url=self.upstream,
                    timeout=httpx.Timeout(60.0),
                    limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
                )
            except BaseException as exc:  # noqa: BLE001 - reported to the caller of start()
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
            loop.close()

        self._thread = threading.Thread(target=run, name=f"fault-proxy-{self.upstream}", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError("the fault proxy did not start")
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _call_soon(self, coroutine: Coroutine[Any, Any, None]) -> None:
        if self._loop is None:
            raise RuntimeError("the fault proxy is not running; call start() first")
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    async def _open_listener(self) -> None:
        if self._server is not None:
            return
        self._server = await asyncio.start_server(self._serve, self.host, self.port, reuse_address=True)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _close_listener(self, drop_connections: bool) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        if drop_connections:
            for writer in list(self._writers):
                abort(writer)

    async def _shutdown(self) -> None:
        await self._close_listener(drop_connections=True)
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if tasks:  # the aborted connections end their tasks; cancel only what is still forwarding
            _, pending = await asyncio.wait(tasks, timeout=2)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    # --- serving ------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        self._writers.add(writer)
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request = await self._read_request(conn, reader, writer)
                if request is None:
                    return
                method, target, headers, body = request
                if not await self._answer(reader, writer, conn, method, target, headers, body):
                    return
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (ConnectionError, h11.ProtocolError, asyncio.IncompleteReadError):
            return
        finally:
            self._writers.discard(writer)
            if not writer.is_closing():
                writer.close()

    async def _read_request(
        self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[str, str, dict[str, str], bytes] | None:
        head: h11.Request | None = None
        chunks: list[bytes] = []
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                if conn.they_are_waiting_for_100_continue:
                    writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")
                data = await reader.read(65536)
                conn.receive_data(data)
                if not data and conn.their_state is h11.IDLE:
                    return None
                continue
            if isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                headers = {k.decode().lower(): v.decode("latin-1") for k, v in head.headers}
                return head.method.decode(), head.target.decode(), headers, b"".join(chunks)
            elif isinstance(event, h11.ConnectionClosed):
                return None

    async def _answer(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        conn: h11.Connection,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
    ) -> bool:
        """Answer one request; False when the connection was reset."""
        call = identify(method, target, headers, body)
        fault = self._fault_for(call)
        if self.delay_ms:
            await asyncio.sleep(self.delay_ms / 1000)
        if fault == "reset":
            abort(writer)
            return False
        if fault == "hang":
            while await reader.read(65536):  # until the client closes the connection
                pass
            return False
        if fault in ("throttle", "unavailable"):
            status, out_headers, out_body = error_response(call, fault, headers)
        else:
            status, out_headers, out_body = await self._forward(method, target, headers, body)
            if fault == "reset_after":
                abort(writer)
                return False
        if method.upper() != "HEAD":
            out_headers = [(k, v) for k, v in out_headers if k.lower() != "content-length"]
            out_headers.append(("content-length", str(len(out_body))))
        writer.write(conn.send(h11.Response(status_code=status, headers=out_headers)) or b"")
        if out_body and method.upper() != "HEAD":
            writer.write(conn.send(h11.Data(data=out_body)) or b"")
        writer.write(conn.send(h11.EndOfMessage()) or b"")
        await writer.drain()
        return True

    async def _forward(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        assert self._client is not None
        request = self._client.build_request(
            method,
            target,
            headers=[(k, v) for k, v in headers.items() if k not in HOP_BY_HOP and k != "content-length"],
            content=body,
        )
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TransportError as exc:
            message = f"fault proxy: upstream {self.upstream} unreachable: {exc}"
            return 502, [("content-type", "text/plain")], message.encode()
        try:
            raw = b"".join([chunk async for chunk in response.aiter_raw()])
        finally:
            await response.aclose()
        out_headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in HOP_BY_HOP]
        return response.status_code, out_headers, raw


def abort(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a dropped connection looks to the client."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    writer.transport.abort()


def main(argv: list[str] | None = None, wait: Callable[[], None] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cart-fault-proxy",
        description="Run the fault proxy in front of the local AWS until Ctrl-C; point "
        "CART_AWS_ENDPOINT_URL at the address it prints.",
    )
    parser.add_argument("--upstream", default="http://127.0.0.1:4566", help="the local AWS (default %(default)s)")
    parser.add_argument("--port", type=int, default=4567, help="port to listen on (default %(default)s)")
    parser.add_argument("--delay-ms", type=float, default=20.0, help="delay per call (default %(default)s ms)")
    parser.add_argument("--throttle", type=float, default=0.0, help="share of calls throttled, 0..1 (default 0)")
    parser.add_argument("--unavailable", type=float, default=0.0, help="share of calls answered 503 (default 0)")
    parser.add_argument("--only", help='limit faults to a service or operation, e.g. "dynamodb:BatchWriteItem"')
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault draws (default %(default)s)")
    args = parser.parse_args(argv)
    proxy = FaultProxy(args.upstream, delay_ms=args.delay_ms, seed=args.seed, port=args.port)
    if args.throttle:
        proxy.throttle(args.throttle, only=args.only)
    if args.unavailable:
        proxy.unavailable(args.unavailable, only=args.only)
    proxy.start()
    print(f"fault proxy on {proxy.url} -> {proxy.upstream} (+{args.delay_ms:g} ms per call); Ctrl-C stops it")
    try:
        (wait or threading.Event().wait)()
    except KeyboardInterrupt:
        pass
    finally:
        proxy.stop()
        print(f"forwarded {sum(proxy.stats.forwarded.values())}, injected {proxy.stats.total_injected()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
