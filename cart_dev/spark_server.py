"""A long-lived Spark Connect server for the local stack, so that no Dagster run pays a JVM.

Every launched Dagster run is a new process. With a Spark of its own (the default without a
server), each run starts a JVM (10-15 s here) and runs silver's contract rules on a cold JIT,
2-3x slower than the same job in a JVM that has run it before (``docs/benchmarks.md``). A Spark
Connect server keeps one JVM: runs attach to it as clients (``CART_SPARK_REMOTE``), each with its
own server-side session, so the start is paid once and the JIT stays warm across hours.

``cart-dev`` (``make run``) starts one with ``spark-submit`` from the installed pyspark, in its own
process group, on loopback only, with the same JVM settings an in-process session gets
(``cart_lakehouse.jobs.spark.local_config``), and ``warm_up`` builds silver a few times on generated
purchases so that the first real hour is not the one that warms the JIT.

**The runs share one server-side session** (``sc://host:port/;session_id=<id>``, the id chosen at
the server's start). Spark Connect gives each session its own classloader, and Spark's cache of
generated code is per classloader: a run in a session of its own generated and compiled silver's
code again, and the JIT met those new classes cold (measured: 13.5-14.5 s for 100k purchases in a
second session against 10.9 s in the shared one, whose second run compiled nothing). The runs set
the same session settings and keep no state in the session beyond their own cached DataFrame.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import pyspark

from cart_dev.local_aws import free_port, stop_process_group
from cart_lakehouse.jobs.spark import SUBMIT_ONLY, local_config, spark_config
from cart_lakehouse.settings import LakeSettings

SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
DEFAULT_PORT = 15002  # Spark Connect's own default
# WARN for Spark, INFO for the Connect service: its log then says which sessions it served
LOG4J2 = """\
rootLogger.level = warn
rootLogger.appenderRef.stdout.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
logger.connect.name = org.apache.spark.sql.connect.service
logger.connect.level = info
"""


def spark_home() -> Path:
    return Path(pyspark.__file__).parent


def url_of(port: int, session_id: str | None = None, host: str = "127.0.0.1") -> str:
    """The server's Spark Connect URL; with ``session_id``, every client of it joins that one
    server-side session (see the module's docstring for why runs share one)."""
    return f"sc://{host}:{port}" + (f"/;session_id={session_id}" if session_id else "")


def new_session_id() -> str:
    return str(uuid.uuid4())


def accepts(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """True when something accepts connections on the port (the server binds it once it serves)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def server_command(settings: LakeSettings, port: int, config_dir: Path) -> list[str]:
    """``spark-submit`` of the Connect server: the master, driver memory and every other setting of
    ``local_config`` (the JVM's and the sessions' defaults), bound to loopback on ``port``."""
    config = local_config(settings)
    log4j = config_dir / "log4j2.properties"
    config_dir.mkdir(parents=True, exist_ok=True)
    log4j.write_text(LOG4J2)
    confs = {k: v for k, v in config.items() if k not in SUBMIT_ONLY}
    confs |= {
        "spark.connect.grpc.binding.address": "127.0.0.1",
        "spark.connect.grpc.binding.port": str(port),
        # the runs' shared session must outlive a quiet night (an expired one cannot be joined again)
        "spark.connect.session.manager.defaultSessionTimeout": "3650d",
    }
    return [
        str(spark_home() / "bin" / "spark-submit"),
        "--class",
        SERVER_CLASS,
        "--master",
        config["spark.master"],
        "--driver-memory",
        config["spark.driver.memory"],
        "--driver-java-options",
        " ".join([f"-Dlog4j2.configurationFile={log4j}", config.get("spark.driver.extraJavaOptions", "")]).strip(),
        *[arg for key, value in confs.items() for arg in ("--conf", f"{key}={value}")],
        "spark-internal",  # no application jar: the server's class is on Spark's own classpath
    ]


def server_env(base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env["SPARK_HOME"] = str(spark_home())
    env.pop("SPARK_REMOTE", None)
    return env


def wait_until_serving(port: int, process: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    """Block until the server accepts connections; a clear error if it exits or takes too long."""
    deadline = time.monotonic() + timeout
    while not accepts(port):
        if process.poll() is not None:
            raise RuntimeError(f"the Spark Connect server exited ({process.returncode}) before serving on port {port}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the Spark Connect server did not serve on port {port} within {timeout:.0f} s")
        time.sleep(0.2)


@contextlib.contextmanager
def connect_mode() -> Iterator[None]:
    """pyspark's functions build Spark Connect columns while this lasts (pyspark decides by the
    environment, as its own builder sets it); restored after, for a process that also holds a local
    session (a benchmark comparing both)."""
    before = os.environ.get("SPARK_CONNECT_MODE_ENABLED")
    os.environ["SPARK_CONNECT_MODE_ENABLED"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("SPARK_CONNECT_MODE_ENABLED", None)
        else:
            os.environ["SPARK_CONNECT_MODE_ENABLED"] = before


def warm_up(url: str, purchases: int = 20_000, seed: int = 1, builds: int = 3) -> float:
    """Build silver ``builds`` times through the server on ``purchases`` generated purchases in a
    throwaway lake, in the server-side session ``url`` names, so that session has generated and
    compiled the contract's rules, and the JIT has compiled them, before the first real hour.
    Returns the seconds it took. The server-side session is kept; the lake is deleted.

    Three builds rather than one: the JIT keeps compiling the rules' hot paths over the first
    builds. Measured for the next hour of 100k purchases: 9.0 s after three builds of 20k,
    13.3 s after one (the builds after the first take 4-6 s; generating the purchases, about 20 s,
    is done once)."""
    from pyspark.sql import SparkSession
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    from cart_api.models import Purchase
    from cart_api.store import to_json
    from cart_dev.seed import stored_purchases
    from cart_lakehouse.hours import Hour
    from cart_lakehouse.jobs.products import products_table, write_products
    from cart_lakehouse.jobs.silver import build_silver
    from cart_lakehouse.lake import Lake
    from cart_lakehouse.layout import bronze_file

    started = time.perf_counter()
    hour = Hour(datetime(2025, 1, 1, tzinfo=UTC) + timedelta(hours=seed % 24))  # any past hour
    rows = (Purchase.model_validate(p).model_dump() for p in stored_purchases(hour.start, purchases, seed=seed))
    with tempfile.TemporaryDirectory(prefix="cart-spark-warm-up-") as root:
        lake = Lake.open(root)
        lake.write_bytes(bronze_file(hour), "".join(f"{to_json(r)}\n" for r in rows).encode())
        write_products(lake, products_table())
        builder = ConnectSession.builder.config(map=spark_config(LakeSettings(spark_remote=url)))
        with connect_mode():
            session = builder.create()
            try:
                for _ in range(builds):
                    build_silver(cast(SparkSession, session), lake, [hour])  # the same DataFrame API over Connect
            finally:
                session.release_session_on_close = False  # the server-side session stays for the runs
                session.stop()
    return time.perf_counter() - started


def close_connect_sessions() -> None:
    """Stop this process's Spark Connect sessions (the default and this thread's active one).

    pyspark closes a Connect client at the process's exit, with cleanup calls to its server; when
    the server has already stopped, each call retries with backoff, and the process hung about
    10 minutes after its work was done (a benchmark that served its own server). Stopping the
    session while its server still answers makes that exit hook a no-op."""
    connect = sys.modules.get("pyspark.sql.connect.session")
    if connect is None:  # no Connect session was ever made here
        return
    cls = connect.SparkSession
    for session in {cls.getActiveSession(), cls._get_default_session()} - {None}:
        session.stop()


@contextlib.contextmanager
def serving(settings: LakeSettings, port: int | None = None, log_path: Path | None = None) -> Iterator[str]:
    """A Spark Connect server for the duration of the block (its own process group, stopped after);
    yields its URL with a new shared session id, as ``cart-dev`` gives its runs. For benchmarks;
    ``cart-dev`` supervises its own."""
    port = port or free_port()
    with tempfile.TemporaryDirectory(prefix="cart-spark-server-") as config_dir:
        command = server_command(settings, port, Path(config_dir))
        log = open(log_path or os.devnull, "ab")  # noqa: SIM115 - closed below, after the process
        try:
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=server_env(), start_new_session=True
            )
            try:
                wait_until_serving(port, process)
                yield url_of(port, new_session_id())
            finally:
                close_connect_sessions()
                stop_process_group(process)
        finally:
            log.close()
