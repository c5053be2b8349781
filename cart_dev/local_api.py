"""The API served by uvicorn on a loopback port in a background thread (tests and benchmarks)."""

from __future__ import annotations

import threading
import time
from types import TracebackType

import uvicorn
from fastapi import FastAPI

from cart_dev.local_aws import answers, free_port, port_is_free


class ApiServer:
    """A real HTTP server around an app, so clients see sockets, keep-alive and concurrency."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.app = app
        self.host = host
        self.chosen_port = port is None  # picked here: another may be picked if it is taken meanwhile
        self._serve_on(port or free_port(host))

    def _serve_on(self, port: int) -> None:
        self.port = port
        config = uvicorn.Config(
            self.app, host=self.host, port=port, log_level="warning", access_log=False, lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"api-{port}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0, attempts: int = 3) -> ApiServer:
        """Serve and wait until ``/health`` answers. A port picked here can be taken by another
        process before uvicorn binds it (parallel tests): then another is tried, ``attempts`` times."""
        for attempt in range(1, attempts + 1):
            self.thread.start()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.server.started and answers(f"{self.url}/health"):
                    return self
                if not self.thread.is_alive():
                    break
                time.sleep(0.05)
            else:
                raise TimeoutError(f"the API did not answer on {self.url} within {timeout:.0f} s")
            if not self.chosen_port or attempt == attempts or port_is_free(self.host, self.port):
                raise RuntimeError(f"the API server on {self.url} exited while starting")
            self._serve_on(free_port(self.host))
        raise AssertionError("unreachable")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
