"""``cart-drop``: sets written to a folder, uploaded to the session's moto server (the CLI reads the
same CART_* settings as everything else, pointed at it), and clear errors when AWS is not there."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from cart_api.settings import Settings
from cart_aws.aws import AwsClients
from cart_dev.filedrop import main, slug
from cart_lakehouse.filedrop.sample import FAULTS, generate_set, key


def landed(aws: AwsClients, bucket: str) -> dict[str, bytes]:
    listed = aws.s3.list_objects_v2(Bucket=bucket, Prefix="landing/").get("Contents", [])
    return {o["Key"]: aws.s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


@pytest.fixture
def env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The CLI's environment pointing at the provisioned moto server."""
    assert settings.aws_endpoint_url
    monkeypatch.setenv("CART_AWS_ENDPOINT_URL", settings.aws_endpoint_url)
    monkeypatch.setenv("CART_LAKE_BUCKET", settings.lake_bucket)
    monkeypatch.delenv("CART_FILEDROP_MAX_FILE_BYTES", raising=False)
    return settings


@pytest.mark.integration
def test_upload_puts_the_set_under_landing(env: Settings, aws: AwsClients, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["upload", "--orders", "40", "--seed", "3", "--name", "first"]) == 0
    assert landed(aws, env.lake_bucket) == generate_set(seed=3, orders=40, name="first")
    out = capsys.readouterr().out
    assert f"s3://{env.lake_bucket} on {env.aws_endpoint_url}" in out
    assert "put landing/orders/first.csv" in out


@pytest.mark.integration
def test_upload_a_faulty_set(env: Settings, aws: AwsClients) -> None:
    assert main(["upload", "--orders", "20", "--fault", "empty file"]) == 0
    files = landed(aws, env.lake_bucket)
    assert files[key("orders", "drop")] == b""
    assert files == FAULTS["empty file"](generate_set(orders=20))


@pytest.mark.integration
def test_upload_every_fault_each_set_with_its_own_name_and_seed(
    env: Settings, aws: AwsClients, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CART_FILEDROP_MAX_FILE_BYTES", "4096")
    assert main(["upload", "--orders", "10", "--fault", "all"]) == 0
    files = landed(aws, env.lake_bucket)
    for rule in FAULTS:
        assert any(f"drop-{slug(rule)}" in k for k in files), rule
    oversized = files[key("orders", f"drop-{slug('size limit')}")]
    assert len(oversized) > 4096


@pytest.mark.integration
def test_the_size_limit_fault_needs_a_limit_a_file_can_exceed(
    env: Settings, aws: AwsClients, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["upload", "--orders", "10", "--fault", "size limit"]) == 2
    assert "CART_FILEDROP_MAX_FILE_BYTES" in capsys.readouterr().err
    assert landed(aws, env.lake_bucket) == {}


@pytest.mark.integration
def test_a_missing_bucket_says_to_provision(
    env: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CART_LAKE_BUCKET", "no-such-bucket")
    assert main(["upload", "--orders", "10"]) == 2
    assert "cart-provision" in capsys.readouterr().err


def test_no_aws_running_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:  # a port nothing listens on: bound, never listening
        sock.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{sock.getsockname()[1]}"
        monkeypatch.setenv("CART_AWS_ENDPOINT_URL", endpoint)
        assert main(["upload", "--orders", "10"]) == 2
    err = capsys.readouterr().err
    assert f"cannot reach AWS at {endpoint}" in err
    assert "make run" in err


def test_generate_writes_the_keys_under_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--out", str(tmp_path), "--orders", "30", "--validate"]) == 0
    expected = generate_set(orders=30)
    assert {str(p.relative_to(tmp_path)): p.read_bytes() for p in tmp_path.rglob("*.csv")} == expected
    assert "**Set valid**" in capsys.readouterr().out


def test_generate_every_fault_one_folder_each(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--out", str(tmp_path), "--orders", "20", "--fault", "all", "--validate"]) == 0
    assert {p.name for p in tmp_path.iterdir()} == {slug(rule) for rule in FAULTS}
    out = capsys.readouterr().out
    assert out.count("**Set rejected: 1 rule(s) broken**") == len(FAULTS)


def test_a_fault_the_set_cannot_show_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["generate", "--out", str(tmp_path), "--tables", "order_items", "--fault", "orders.status: enum"])
    assert code == 2
    assert "needs a file of orders" in capsys.readouterr().err
    assert not list(tmp_path.rglob("*.csv"))


def test_unknown_fault_and_the_list_of_faults(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--out", str(tmp_path), "--fault", "typo"]) == 2
    assert "cart-drop faults" in capsys.readouterr().err
    assert main(["faults"]) == 0
    assert capsys.readouterr().out.splitlines() == list(FAULTS)


def test_help_shows_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    assert "cart-drop upload --fault" in capsys.readouterr().out
