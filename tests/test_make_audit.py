"""`make audit` through the Makefile, against a local OSV service (pip-audit's `--osv-url`), so every
outcome is reproducible offline: nothing known, a finding (and the same finding accepted through
AUDIT_IGNORE), and a service that cannot answer, which must fail and never pass for a clean audit."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class FakeOsv:
    """Answers OSV's POST /v1/query: `vulnerable` maps a package to the advisory id it is given."""

    url: str = ""
    vulnerable: dict[str, str] = field(default_factory=dict)
    status: int = 200
    queried: set[str] = field(default_factory=set)


@pytest.fixture
def osv() -> Iterator[FakeOsv]:
    fake = FakeOsv()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            query = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            name = query["package"]["name"]
            fake.queried.add(name)
            answer: dict[str, Any] = {}
            if name in fake.vulnerable:
                affected = {"introduced": "0"}, {"fixed": "9999"}
                answer = {
                    "vulns": [
                        {
                            "id": fake.vulnerable[name],
                            "summary": "test advisory",
                            "affected": [
                                {
                                    "package": {"name": name, "ecosystem": "PyPI"},
                                    "ranges": [{"type": "ECOSYSTEM", "events": list(affected)}],
                                }
                            ],
                        }
                    ]
                }
            body = json.dumps(answer).encode()
            self.send_response(fake.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # port 0: the system picks a free one
    fake.url = f"http://127.0.0.1:{server.server_address[1]}/v1/query"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()


def make_audit(osv: FakeOsv, tmp_path: Path, *variables: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "make",
            "--no-print-directory",
            "audit",
            # this test's own files: tests on other workers may audit at the same time
            f"AUDIT_REQUIREMENTS={tmp_path}/requirements.txt",
            f"AUDIT_LOG={tmp_path}/pip-audit.log",
            f"ARGS=--vulnerability-service osv --osv-url {osv.url}",
            *variables,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_audits_what_is_deployed_and_passes_when_nothing_is_known(osv: FakeOsv, tmp_path: Path) -> None:
    done = make_audit(osv, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No known vulnerabilities found" in done.stdout + done.stderr
    # the Lambda packages' runtime and the lakehouse image's; not the local or development tools
    assert {"fastapi", "boto3", "mangum", "dagster", "pyspark", "dbt-core", "dagster-postgres"} <= osv.queried
    assert not {"moto", "pytest", "mypy", "pip-audit", "cart-lakehouse"} & osv.queried


def test_a_finding_fails_with_what_to_do_unless_its_id_is_accepted(osv: FakeOsv, tmp_path: Path) -> None:
    osv.vulnerable = {"boto3": "TEST-2026-1"}
    done = make_audit(osv, tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "boto3" in output
    assert "TEST-2026-1" in output
    assert "known vulnerabilities in the locked dependencies" in output
    assert "AUDIT_IGNORE" in output

    accepted = make_audit(osv, tmp_path, "AUDIT_IGNORE=TEST-2026-1")
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert "1 ignored" in accepted.stdout + accepted.stderr


def test_a_service_that_cannot_answer_fails_as_not_checked(osv: FakeOsv, tmp_path: Path) -> None:
    osv.status = 503
    done = make_audit(osv, tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "NOT CHECKED" in output
    assert "No known vulnerabilities found" not in output
