"""``cart-dev --once``: the README's run command starts everything, seeds traffic, sees it stored, stops."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from infra.local_aws import answers, free_port


def test_run_command_brings_the_stack_up_and_stores_the_seed_traffic(tmp_path: Path) -> None:
    api_port, aws_port, dagster_port = free_port(), free_port(), free_port()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "infra.dev",
            "--once",
            "--traffic",
            "30",
            "--invalid-share",
            "0.2",
            "--api-port",
            str(api_port),
            "--aws-port",
            str(aws_port),
            "--dagster-port",
            str(dagster_port),
            "--state-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "Stored:" in out
    assert f"http://127.0.0.1:{api_port}/docs" in out
    assert f"Dagster UI (assets)   http://127.0.0.1:{dagster_port}" in out
    assert "rejected" in out  # the traffic summary
    assert (tmp_path / "logs" / "api.log").exists()
    # everything it started has stopped
    assert not answers(f"http://127.0.0.1:{api_port}/health")
    assert not answers(f"http://127.0.0.1:{aws_port}/moto-api/")
    assert not answers(f"http://127.0.0.1:{dagster_port}/server_info")
