"""The local Spark Connect server: how it is started, and how a run is pointed at it.

A real server serving a real run is tested by the ``make run`` stack test
(tests/cart_dev/test_supervisor.py), which materializes its hours through one.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from cart_dev import spark_server
from cart_lakehouse.jobs.spark import SESSION_KEYS, local_config, spark_config
from cart_lakehouse.settings import LakeSettings
from tests.conftest import SHORT_LIVED_JVM


def test_the_server_serves_on_loopback_with_the_jvm_settings_an_in_process_spark_gets(tmp_path: Path) -> None:
    settings = LakeSettings(spark_master="local[3]", spark_shuffle_partitions=7)
    command = spark_server.server_command(settings, 15123, tmp_path)
    options = dict(zip(command[1::2], command[2::2], strict=False))
    assert options["--class"] == spark_server.SERVER_CLASS
    assert options["--master"] == "local[3]"
    assert options["--driver-memory"] == local_config(settings)["spark.driver.memory"]
    confs = dict(c.split("=", 1) for flag, c in itertools.pairwise(command) if flag == "--conf")
    assert confs["spark.connect.grpc.binding.address"] == "127.0.0.1"
    assert confs["spark.connect.grpc.binding.port"] == "15123"
    assert confs["spark.sql.shuffle.partitions"] == "7"
    assert "spark.master" not in confs  # spark-submit's own option, not a conf
    # its log: the Connect service at INFO (which sessions it served), the rest of Spark at WARN
    log4j, java_options = options["--driver-java-options"].removeprefix("-Dlog4j2.configurationFile=").split(" ", 1)
    assert java_options == settings.spark_java_options  # the JVM's own options, as a run's own Spark gets them
    assert "logger.connect.level = info" in Path(log4j).read_text()


def test_a_run_pointed_at_a_server_sends_only_its_session_settings() -> None:
    remote = spark_config(LakeSettings(spark_remote="sc://127.0.0.1:15002", spark_shuffle_partitions=5))
    assert remote == {
        "spark.remote": "sc://127.0.0.1:15002",
        **{k: local_config(LakeSettings())[k] for k in SESSION_KEYS},
    } | {"spark.sql.shuffle.partitions": "5"}
    local = spark_config(LakeSettings())
    assert "spark.remote" not in local
    assert local["spark.master"] == "local[2]"


def test_a_spark_remote_that_is_not_a_spark_connect_url_is_refused() -> None:
    with pytest.raises(ValidationError, match="spark_remote"):
        LakeSettings(spark_remote="http://127.0.0.1:15002")


def test_a_server_that_exits_before_serving_is_reported_with_its_exit_code() -> None:
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    with pytest.raises(RuntimeError, match=r"exited \(3\) before serving on port 1"):
        spark_server.wait_until_serving(1, process, timeout=30)  # type: ignore[arg-type]


SERVED_AND_LEFT = """
from pyspark.sql.connect.session import SparkSession
from cart_dev import spark_server
from cart_lakehouse.settings import LakeSettings

with spark_server.serving(LakeSettings(spark_master="local[1]")) as url, spark_server.connect_mode():
    session = SparkSession.builder.remote(url).getOrCreate()
    assert session.range(3).count() == 3
print("served", flush=True)
"""


@pytest.mark.e2e  # a real Spark Connect server: about 20 s
def test_a_process_that_served_a_server_exits_when_done_instead_of_retrying_a_stopped_server() -> None:
    """pyspark's exit hook calls the server of every open Connect session, retrying for about 10
    minutes when it is gone: ``serving`` stops this process's sessions before its server."""
    env = {**os.environ, "CART_SPARK_JAVA_OPTIONS": SHORT_LIVED_JVM}
    done = subprocess.run(
        [sys.executable, "-c", SERVED_AND_LEFT], env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "served"
