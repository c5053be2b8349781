"""``make run``: the whole system on this machine, on its embedded defaults (``cart-dev``).

Starts the local AWS (a moto server), provisions every resource, starts the API and the worker
as child processes in their own process groups, seeds traffic so data is seen flowing, prints
where everything is, and stops it all on Ctrl-C (or SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from urllib.parse import urlparse

from infra.aws import AwsClients
from infra.local_aws import MotoServer, answers, stop_process_group
from infra.provision import format_changes, provision
from infra.settings import AwsSettings


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path


@dataclass
class DevStack:
    state_dir: Path
    api_port: int
    aws_port: int
    children: list[Child] = field(default_factory=list)
    moto: MotoServer | None = None

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> Child:
        log = self.logs / f"{name}.log"
        out = log.open("ab")
        process = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=os.getcwd()
        )
        child = Child(name, process, log)
        self.children.append(child)
        return child

    def stop(self) -> None:
        for child in reversed(self.children):
            stop_process_group(child.process)
        if self.moto:
            self.moto.stop()


def step(message: str) -> None:
    print(f"==> {message}", flush=True)


def wait_until(check: object, timeout: float, what: str, child: Child | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        if child and child.process.poll() is not None:
            raise RuntimeError(f"{child.name} exited ({child.process.returncode}); see {child.log}:\n{tail(child.log)}")
        time.sleep(0.2)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s" + (f"; see {child.log}" if child else ""))


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def stored_count(aws: AwsClients, table: str) -> int:
    return int(aws.dynamodb.scan(TableName=table, Select="COUNT")["Count"])


LOCATIONS_QUERY = """
{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""


def code_location_loaded(dagster_url: str) -> bool:
    """True once every code location has loaded; a load error stops ``make run`` with its message."""
    request = urllib.request.Request(
        f"{dagster_url}/graphql",
        data=json.dumps({"query": LOCATIONS_QUERY}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            workspace = json.load(answer)["data"]["workspaceOrError"]
    except (OSError, ValueError, KeyError):
        return False
    entries = workspace.get("locationEntries") or []
    for entry in entries:
        loaded = entry.get("locationOrLoadError") or {}
        if loaded.get("__typename") == "PythonError":
            raise RuntimeError(f"Dagster could not load {entry['name']}: {loaded.get('message')}")
    return bool(entries) and all(e.get("loadStatus") == "LOADED" and e.get("locationOrLoadError") for e in entries)


def run(args: argparse.Namespace) -> int:
    stack = DevStack(Path(args.state_dir), args.api_port, args.aws_port)
    stack.logs.mkdir(parents=True, exist_ok=True)
    endpoint = f"http://127.0.0.1:{args.aws_port}"
    env = {**os.environ, "CART_AWS_ENDPOINT_URL": endpoint, "PYTHONUNBUFFERED": "1"}
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        if answers(f"{endpoint}/moto-api/"):
            step(f"Local AWS: reusing the moto server already on {endpoint}")
        else:
            step(f"Local AWS: starting a moto server on {endpoint}")
            stack.moto = MotoServer(port=args.aws_port, log_path=stack.logs / "moto.log").start()

        settings = AwsSettings(aws_endpoint_url=endpoint)
        step("Provisioning SNS, SQS (+DLQ), DynamoDB and S3 (idempotent)")
        print(format_changes(provision(settings)), flush=True)

        step(f"API: starting uvicorn on http://127.0.0.1:{args.api_port}")
        api = stack.spawn(
            "api",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "cart_api.app:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(args.api_port),
                "--no-access-log",
            ],
            env,
        )
        api_url = f"http://127.0.0.1:{args.api_port}"
        wait_until(lambda: answers(f"{api_url}/ready"), 60, "API", api)

        step("Worker: starting the long-polling SQS worker")
        worker = stack.spawn("worker", [sys.executable, "-m", "cart_api.runner"], env)

        aws = AwsClients(settings)
        table = settings.purchases_table
        if args.traffic:
            from cart_api.traffic import TrafficConfig, run_traffic

            step(f"Traffic: sending {args.traffic} purchases ({args.invalid_share:.0%} deliberately invalid)")
            before = stored_count(aws, table)
            report = asyncio.run(
                run_traffic(
                    TrafficConfig(url=api_url, count=args.traffic, invalid_share=args.invalid_share, seed=args.seed)
                )
            )
            print(report.summary(), flush=True)
            wait_until(
                lambda: stored_count(aws, table) - before >= report.accepted, 60, "worker storing purchases", worker
            )
            step(f"Stored: {stored_count(aws, table)} purchases in DynamoDB table {table}")

        dagster_url = None
        if args.dagster_port:
            dagster_url = f"http://127.0.0.1:{args.dagster_port}"
            home = (stack.state_dir / "dagster").resolve()
            home.mkdir(parents=True, exist_ok=True)
            step(f"Dagster: starting dagster dev on {dagster_url} (DAGSTER_HOME={home})")
            dagster = stack.spawn(
                "dagster",
                [
                    sys.executable,
                    "-m",
                    "dagster",
                    "dev",
                    "-w",
                    "workspace.yaml",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(args.dagster_port),
                ],
                {**env, "DAGSTER_HOME": str(home), "CART_DAGSTER_UI_URL": dagster_url},
            )
            wait_until(lambda: answers(f"{dagster_url}/server_info"), 120, "Dagster UI", dagster)
            wait_until(lambda: code_location_loaded(dagster_url), 180, "Dagster definitions", dagster)

        print_banner(api_url, endpoint, stack, dagster_url)
        if args.once:
            return 0
        while True:
            for child in stack.children:
                if child.process.poll() is not None:
                    print(f"{child.name} exited ({child.process.returncode}); last lines of {child.log}:")
                    print(tail(child.log))
                    return 1
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nStopping...", flush=True)
        return 0
    except (RuntimeError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        stack.stop()
        step("Stopped everything this command started.")


def print_banner(api_url: str, endpoint: str, stack: DevStack, dagster_url: str | None) -> None:
    host = urlparse(api_url).netloc
    today = time.strftime("%Y-%m-%d", time.gmtime())
    example = (
        '{"buyer_id":"B000001","product_id":"P0001","number_of_installments":2,'
        f'"total_amount":59.9,"purchase_date":"{today}"}}'
    )
    dagster_line = f"  Dagster UI (assets)   {dagster_url}/asset-groups\n" if dagster_url else ""
    print(
        f"""
Cart lakehouse is running:
{dagster_line}  API (OpenAPI docs)    {api_url}/docs
  API readiness         {api_url}/ready
  Local AWS (moto)      {endpoint}   dashboard: {endpoint}/moto-api/
  Logs                  {stack.logs}/ (api.log, worker.log, moto.log, dagster.log)

Send a purchase:
  curl -s -X POST http://{host}/purchases -H 'X-API-Key: local-dev-key' \\
       -H 'Content-Type: application/json' \\
       -d '{example}'
More traffic:  uv run cart-traffic --count 1000 --invalid-share 0.1
Stop: Ctrl-C
""",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cart-dev",
        description=(
            "Run the cart lakehouse locally: moto server (local AWS), provisioning, API, worker, dagster dev "
            "and seed traffic. Ctrl-C stops everything it started."
        ),
    )
    parser.add_argument("--api-port", type=int, default=8000, help="API port (default 8000)")
    parser.add_argument("--aws-port", type=int, default=4566, help="moto server port (default 4566)")
    parser.add_argument(
        "--dagster-port", type=int, default=3000, help="dagster dev UI port (default 3000; 0: do not start Dagster)"
    )
    parser.add_argument("--traffic", type=int, default=200, help="purchases to seed (0: none; default 200)")
    parser.add_argument("--invalid-share", type=float, default=0.05, help="share of invalid seed requests")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the seed traffic")
    parser.add_argument("--state-dir", default=".local", help="where logs and local state go (default .local)")
    parser.add_argument("--once", action="store_true", help="start, seed, check, then stop (smoke test)")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
