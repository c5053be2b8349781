"""The Lambda packages: each zip, unpacked into an empty folder and imported by a Python that sees
nothing else (no venv site-packages), serves its event against the moto server; Spark, Dagster,
dbt, DuckDB and moto are not in it."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from cart_api.settings import Settings
from cart_api.store import get_purchase, to_json
from cart_aws.aws import AwsClients
from cart_dev.package import LAMBDA_PLATFORM, MAX_UNZIPPED_BYTES, MAX_ZIPPED_BYTES, Package, build, main
from tests.cart_api.test_lambda_handler import rest_api_event
from tests.cart_api.test_worker import purchase
from tests.conftest import API_KEY, VALID_PURCHASE, queue_depth, receive_all

# what the ingest service must not drag into a Lambda package
NOT_PACKAGED = ("pyspark", "dagster", "dbt", "duckdb", "pandas", "pyarrow", "moto", "uvicorn")

# Runs in `python -I -S`: no site-packages, no PYTHONPATH, no current folder; only the package's folder
_RUN_HANDLER = """
import importlib, importlib.util, json, sys
folder, handler_path, event_file, result_file = sys.argv[1:5]
sys.path.insert(0, folder)
module_name, _, name = handler_path.rpartition(".")
module = importlib.import_module(module_name)
with open(event_file) as f:
    event = json.load(f)
response = getattr(module, name)(event, None)
result = {
    "response": response,
    "module_file": module.__file__,
    "sys_path": sys.path,
    "importable": [m for m in sys.argv[5:] if importlib.util.find_spec(m) is not None],
}
with open(result_file, "w") as f:
    json.dump(result, f)
"""


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Package]:
    # Lambda's platform where this machine can run its wheels; otherwise this machine's
    on_x86_linux = sys.platform == "linux" and platform.machine() == "x86_64"
    built = build(tmp_path_factory.mktemp("lambda"), python_platform=LAMBDA_PLATFORM if on_x86_linux else None)
    return {package.path.name: package for package in built}


def unpack(package: Package, folder: Path) -> Path:
    folder.mkdir()
    with zipfile.ZipFile(package.path) as archive:
        archive.extractall(folder)
    return folder


def invoke(folder: Path, handler: str, event: dict[str, Any], settings: Settings, tmp_path: Path) -> dict[str, Any]:
    """Call ``handler`` in a fresh interpreter whose only import path beyond the standard library
    is ``folder``, configured through the environment as the template configures the function."""
    event_file, result_file = tmp_path / "event.json", tmp_path / "result.json"
    event_file.write_text(json.dumps(event))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CART_", "PYTHON"))}
    env |= {
        "CART_AWS_ENDPOINT_URL": str(settings.aws_endpoint_url),
        "CART_API_KEYS": json.dumps({n: k.get_secret_value() for n, k in settings.api_keys.items()}),
        "CART_MAX_RECEIVE_COUNT": str(settings.max_receive_count),
    }
    arguments = [str(folder), handler, str(event_file), str(result_file), *NOT_PACKAGED]
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", _RUN_HANDLER, *arguments],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(result_file.read_text())
    # the handler came from the unpacked zip, and nothing but the standard library was reachable besides
    assert Path(result["module_file"]).is_relative_to(folder)
    assert not [p for p in result["sys_path"] if "site-packages" in p]
    assert result["importable"] == []
    return result


@pytest.mark.e2e  # builds both zips (about 20 s) and imports each in a fresh interpreter
def test_the_api_zip_serves_a_rest_api_event(
    packages: dict[str, Package], settings: Settings, aws: AwsClients, tmp_path: Path
) -> None:
    package = packages["api.zip"]
    assert package.handler == "cart_api.lambda_handler.api_handler"
    folder = unpack(package, tmp_path / "api")
    headers = {"content-type": "application/json", "x-api-key": API_KEY}
    event = rest_api_event("POST", "/purchases", json.dumps(VALID_PURCHASE), headers)
    response = invoke(folder, package.handler, event, settings, tmp_path)["response"]
    assert response["statusCode"] == 202, response
    assert json.loads(response["body"])["purchase_id"]
    assert queue_depth(aws, settings.purchases_queue) == 1


@pytest.mark.e2e  # builds both zips (about 20 s) and imports each in a fresh interpreter
def test_the_worker_zip_stores_a_batch_and_dead_letters_the_poison(
    packages: dict[str, Package], settings: Settings, aws: AwsClients, tmp_path: Path
) -> None:
    package = packages["worker.zip"]
    assert package.handler == "cart_api.lambda_handler.worker_handler"
    folder = unpack(package, tmp_path / "worker")
    valid = purchase()
    event = {
        "Records": [
            {
                "messageId": "m-valid",
                "body": to_json(valid),
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {"schema_version": {"dataType": "String", "stringValue": "1.0.0"}},
            },
            {"messageId": "m-poison", "body": "[]", "attributes": {"ApproximateReceiveCount": "1"}},
        ]
    }
    response = invoke(folder, package.handler, event, settings, tmp_path)["response"]
    # both handled: the valid one stored, the poison one forwarded to the DLQ, so none is retried
    assert response == {"batchItemFailures": []}
    stored = get_purchase(aws.dynamodb, settings.purchases_table, valid["purchase_id"])
    assert stored is not None
    assert stored["buyer_id"] == VALID_PURCHASE["buyer_id"]
    (dead,) = receive_all(aws, settings.purchases_dlq)
    assert dead["MessageAttributes"]["source_message_id"]["StringValue"] == "m-poison"


@pytest.mark.e2e  # builds both zips (about 20 s) and imports each in a fresh interpreter
def test_the_packages_hold_the_code_and_its_contracts_within_lambdas_limits(packages: dict[str, Package]) -> None:
    assert sorted(packages) == ["api.zip", "worker.zip"]
    for package in packages.values():
        assert package.problems == []
        with zipfile.ZipFile(package.path) as archive:
            names = set(archive.namelist())
        assert {"cart_api/lambda_handler.py", "cart_aws/settings.py", "contracts/purchases.odcs.yaml"} <= names
        assert not [n for n in names if n.startswith(NOT_PACKAGED)]
        # compiled ahead: Lambda's code folder is read-only
        assert "cart_api/__pycache__/lambda_handler.cpython-311.pyc" in names


def test_a_package_over_the_limits_is_refused(tmp_path: Path) -> None:
    too_big = Package("cart-api", "h", tmp_path / "api.zip", MAX_ZIPPED_BYTES + 2**21, MAX_UNZIPPED_BYTES + 2**21)
    assert too_big.problems == [
        "api.zip: 52.0 MB zipped, over Lambda's 50.0 MB",
        "api.zip: 252.0 MB unzipped, over Lambda's 250.0 MB",
    ]


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "Lambda's size limits" in capsys.readouterr().out
