"""The project's local AWS: a moto server on a loopback port, started as a child process."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType

from cart_dev.moto_checkpoint import CHECKPOINT_PATH, RESTORE_PATH


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def answers(url: str, timeout: float = 0.5) -> bool:
    """True when something answers HTTP at ``url`` (any status)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


class PortTaken(RuntimeError):
    """The port asked for is held by another process."""


class MotoServer:
    """A moto server in its own process group, so stopping it stops everything it started.

    By default the server is ``cart_dev.moto_server``: moto's own server with the project's
    performance patches (see that module); ``stock=True`` runs ``python -m moto.server`` as is.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
        stock: bool = False,
    ) -> None:
        self.host = host
        self.chosen_port = port is None  # a free port picked here: another may be picked if it is taken
        self.port = port or free_port(host)
        self.log_path = log_path
        self.env = env or {}  # extra environment of the server (moto's MOTO_* switches)
        self.stock = stock
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def module(self) -> str:
        """The module the server runs: moto's own server, or the project's patched one."""
        return "moto.server" if self.stock else "cart_dev.moto_server"

    def start(self, timeout: float = 30.0, attempts: int = 3) -> MotoServer:
        """Start the server and wait until it answers. A port picked here (none given) can be taken by
        another process between picking and binding (parallel tests start many servers): then
        another free port is tried, up to ``attempts`` times."""
        for attempt in range(1, attempts + 1):
            try:
                return self._start(timeout)
            except PortTaken:
                if not self.chosen_port or attempt == attempts:
                    raise
                self.port = free_port(self.host)
        raise AssertionError("unreachable")

    def _start(self, timeout: float) -> MotoServer:
        if answers(f"{self.endpoint_url}/moto-api/"):
            raise PortTaken(
                f"Port {self.port} is already in use by another server; stop it or choose "
                "another port (CART_AWS_ENDPOINT_URL)."
            )
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module, "-H", self.host, "-p", str(self.port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "false", **self.env},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                if not port_is_free(self.host, self.port):
                    raise PortTaken(f"moto server could not bind port {self.port}: another process holds it")
                raise RuntimeError(f"moto server exited with code {self.process.returncode}")
            if answers(f"{self.endpoint_url}/moto-api/"):
                return self
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"moto server did not answer on {self.endpoint_url} within {timeout:.0f}s")

    def reset(self) -> None:
        """Forget every resource (moto's reset API); used between tests."""
        req = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        urllib.request.urlopen(req, timeout=10).close()

    def checkpoint(self, name: str) -> None:
        """Keep what the server holds now as checkpoint ``name`` (in its memory; the project's
        server only, see ``cart_dev.moto_checkpoint``)."""
        if self.stock:
            raise RuntimeError("checkpoints are served by cart_dev.moto_server, not by stock moto")
        self._post(f"{CHECKPOINT_PATH}?{urllib.parse.urlencode({'name': name})}")

    def restore(self, name: str) -> bool:
        """Bring the server back to checkpoint ``name``: a reset, then what it held at the
        checkpoint and nothing else. False, and nothing changed, when there is no such checkpoint."""
        if self.stock:
            return False
        try:
            self._post(f"{RESTORE_PATH}?{urllib.parse.urlencode({'name': name})}")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return False
            raise
        return True

    def _post(self, path: str) -> None:
        req = urllib.request.Request(f"{self.endpoint_url}{path}", method="POST")
        urllib.request.urlopen(req, timeout=30).close()

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        stop_process_group(self.process, timeout)

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def stop_process_group(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM the child's process group, then SIGKILL it if it does not exit in time."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            continue


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cart-local-aws",
        description="Run the local AWS (a moto server) in the foreground until Ctrl-C.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4566)
    parser.add_argument(
        "--stock",
        action="store_true",
        help="run moto's own server, without the project's performance patches (cart_dev/moto_server.py)",
    )
    args = parser.parse_args(argv)
    server = MotoServer(args.host, args.port, stock=args.stock).start()
    kind = "stock moto" if args.stock else "moto with the project's patches"
    print(f"{kind} server on {server.endpoint_url} (dashboard: {server.endpoint_url}/moto-api/); Ctrl-C stops it")
    try:
        assert server.process is not None
        server.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
