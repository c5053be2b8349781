"""The local AWS and the API start on a port nobody else holds: one they picked is replaced when
another process took it first (parallel tests start many servers), one given is refused clearly."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from cart_api.app import create_app
from cart_api.settings import Settings
from cart_dev.local_api import ApiServer
from cart_dev.local_aws import MotoServer, PortTaken, answers


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port another process would hold: bound and listening, answering nothing."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_a_picked_port_taken_before_the_server_binds_it_is_replaced(held_port: int) -> None:
    server = MotoServer()
    server.port = held_port  # as if another process bound the picked port in between
    with server:
        assert server.port != held_port
        assert answers(f"{server.endpoint_url}/moto-api/")


def test_a_given_port_that_is_taken_is_refused_with_the_reason(held_port: int) -> None:
    with pytest.raises(PortTaken, match=f"port {held_port}"):
        MotoServer(port=held_port).start()


# uvicorn ends its thread with SystemExit when it cannot bind: that is the failure being recovered from
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_the_api_server_moves_off_a_picked_port_that_was_taken(held_port: int) -> None:
    server = ApiServer(create_app(Settings(api_keys={"tests": "k"})))
    server._serve_on(held_port)  # as if another process bound the picked port in between
    with server:
        assert server.port != held_port
        assert answers(f"{server.url}/health")
