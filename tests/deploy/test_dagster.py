"""The production Dagster deployment in deploy/dagster/: the instance and workspace files validated
by Dagster's own schemas (no Postgres, ECS or S3 is contacted), and the code location's Dockerfile
checked statically (no Docker engine runs here)."""

from __future__ import annotations

import importlib
import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import dagster
import pytest
import yaml
from dagster._config import process_config
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import dagster_instance_config
from dagster._core.workspace.config_schema import ensure_workspace_config
from dagster._serdes import ConfigurableClass
from dagster._serdes.config_class import class_from_code_pointer
from dagster_aws.s3.compute_log_manager import S3ComputeLogManager
from dagster_postgres import DagsterPostgresStorage

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "dagster"
INSTANCE_ENV = {
    "DAGSTER_PG_HOST": "dagster.cluster-abc.us-east-1.rds.amazonaws.com",
    "DAGSTER_PG_PORT": "5432",
    "DAGSTER_PG_DB": "dagster",
    "DAGSTER_PG_USER": "dagster",
    "DAGSTER_PG_PASSWORD": "from-secrets-manager",
    "DAGSTER_ECS_CLUSTER": "cart-dagster",
    "DAGSTER_COMPUTE_LOGS_BUCKET": "cart-lake-prod",
    "DAGSTER_COMPUTE_LOGS_PREFIX": "logs/dagster",
}
# the sections of dagster.yaml naming a class Dagster instantiates with the section's config
CLASS_SECTIONS = ("run_launcher", "run_coordinator", "compute_logs")


@pytest.fixture
def instance_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in INSTANCE_ENV.items():
        monkeypatch.setenv(name, value)
    return INSTANCE_ENV


def test_the_instance_validates_against_dagsters_schema(instance_env: dict[str, str]) -> None:
    config, custom_class = dagster_instance_config(str(DEPLOY))  # what DagsterInstance.from_config runs

    assert custom_class is None
    postgres = config["storage"]["postgres"]["postgres_db"]  # runs, event logs and schedules
    assert postgres["hostname"] == {"env": "DAGSTER_PG_HOST"}
    assert config["telemetry"] == {"enabled": False}
    assert config["run_coordinator"]["config"]["max_concurrent_runs"] == 4
    for section, (module, cls) in {
        "run_launcher": ("dagster_aws.ecs", "EcsRunLauncher"),
        "compute_logs": ("dagster_aws.s3.compute_log_manager", "S3ComputeLogManager"),
        "run_coordinator": ("dagster", "QueuedRunCoordinator"),
    }.items():
        assert (config[section]["module"], config[section]["class"]) == (module, cls)


@pytest.mark.parametrize("section", CLASS_SECTIONS)
def test_each_configured_class_imports_and_accepts_its_config(instance_env: dict[str, str], section: str) -> None:
    raw = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())[section]
    cls = class_from_code_pointer(raw["module"], raw["class"])
    assert issubclass(cls, ConfigurableClass)

    # the class's own schema, env: values resolved (what from_config_value receives)
    result = process_config(cls.config_type(), raw["config"])

    assert result.success, result.errors
    resolved: dict[str, Any] = dict(result.value or {})
    if section == "compute_logs":
        assert (resolved["bucket"], resolved["prefix"]) == ("cart-lake-prod", "logs/dagster")
    if section == "run_launcher":
        assert resolved["run_task_kwargs"]["cluster"] == "cart-dagster"


def test_the_postgres_storage_class_accepts_its_config(instance_env: dict[str, str]) -> None:
    raw = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())["storage"]["postgres"]
    result = process_config(DagsterPostgresStorage.config_type(), raw)

    assert result.success, result.errors
    assert result.value is not None
    assert result.value["postgres_db"]["password"] == "from-secrets-manager"
    assert result.value["postgres_db"]["port"] == 5432


def test_a_missing_environment_variable_is_a_clear_error(
    instance_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DAGSTER_COMPUTE_LOGS_BUCKET")
    raw = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())["compute_logs"]

    result = process_config(S3ComputeLogManager.config_type(), raw["config"])

    assert not result.success
    assert "DAGSTER_COMPUTE_LOGS_BUCKET" in str(result.errors)


def test_the_workspace_loads_the_code_location_over_grpc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGSTER_CODE_LOCATION_HOST", "code-location.cart.local")
    path = DEPLOY / "workspace.yaml"

    config = ensure_workspace_config(yaml.safe_load(path.read_text()), str(path))

    server = config["load_from"][0]["grpc_server"]
    assert server["port"] == 4000
    assert server["location_name"] == "cart_lakehouse"
    with pytest.raises(DagsterInvalidConfigError):
        ensure_workspace_config({"load_from": [{"grpc_server": {"port": "not a port"}}]}, str(path))


# --- The code location image (checked statically: no Docker engine runs here) ------------------


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined and comments dropped."""
    joined = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in dockerfile.read_text().splitlines() if not line.lstrip().startswith("#")),
    )
    out = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def final_stage(steps: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def kept_by_dockerignore(path: str, ignore: Path) -> bool:
    """Whether the build context keeps ``path`` (the file's last matching pattern wins)."""
    kept = True
    for pattern in ignore.read_text().splitlines():
        pattern = pattern.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated, pattern = pattern.startswith("!"), pattern.lstrip("!").rstrip("/")
        if pattern == "*" or path == pattern or path.startswith(f"{pattern}/"):
            kept = negated
    return kept


def test_every_copy_source_is_in_the_repository_and_in_the_build_context() -> None:
    steps = instructions(DEPLOY / "Dockerfile")
    sources = []
    for keyword, args in steps:
        if keyword != "COPY":
            continue
        words = [w for w in shlex.split(args) if not w.startswith("--")]
        if "--from=" in args:
            continue  # from another stage or image, not from the repository
        sources.extend(words[:-1])

    assert {"uv.lock", "pyproject.toml", "cart_lakehouse", "dbt_project"} <= set(sources)
    for source in sources:
        assert (REPO / source).exists(), source
        assert kept_by_dockerignore(source, DEPLOY / "Dockerfile.dockerignore"), source
    assert not kept_by_dockerignore("tests", DEPLOY / "Dockerfile.dockerignore")
    assert not kept_by_dockerignore(".venv", DEPLOY / "Dockerfile.dockerignore")


def test_dependencies_install_from_the_lock_file_without_the_dev_tools() -> None:
    syncs = [args for keyword, args in instructions(DEPLOY / "Dockerfile") if keyword == "RUN" and "uv sync" in args]
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())

    assert len(syncs) == 2  # the dependencies' layer, then the project
    for args in syncs:
        words = shlex.split(args.split("&&")[0])
        assert "--locked" in words
        assert "--no-dev" in words
        extras = [words[i + 1] for i, w in enumerate(words) if w == "--extra"]
        assert extras == ["lakehouse"]
        assert set(extras) <= set(pyproject["project"]["optional-dependencies"])
    assert "dagster-postgres" in " ".join(pyproject["project"]["optional-dependencies"]["lakehouse"])


def test_the_image_runs_as_a_user_with_java_and_serves_the_definitions_over_grpc() -> None:
    steps = final_stage(instructions(DEPLOY / "Dockerfile"))
    users = [args for keyword, args in steps if keyword == "USER"]
    assert users
    assert users[-1].split(":")[0] not in ("root", "0")
    assert any(keyword == "RUN" and "openjdk-17-jre-headless" in args for keyword, args in steps)

    cmd = json.loads(next(args for keyword, args in reversed(steps) if keyword == "CMD"))
    assert cmd[:3] == ["dagster", "code-server", "start"]
    from dagster._cli.code_server import start_command  # click parses the arguments as the CLI would

    options = start_command.make_context("start", cmd[3:]).params
    assert (options["host"], options["port"]) == ("0.0.0.0", 4000)
    module = importlib.import_module(options["module_name"])  # the definitions the server loads
    assert isinstance(getattr(module, options["attribute"]), dagster.Definitions)


# --- The EMR Serverless image of silver's job -------------------------------------------------------


def test_the_emr_image_gives_the_job_the_python_its_run_names() -> None:
    from cart_lakehouse.jobs.silver_entry import JOB_PYTHON

    steps = instructions(REPO / "deploy" / "emr" / "Dockerfile")
    runs = " ".join(args for keyword, args in steps if keyword == "RUN")
    version = Path(JOB_PYTHON).name  # python3.11: what the run's PYSPARK_PYTHON names
    assert f"dnf install -y {version}" in runs
    assert f"{version} -m pip install" in runs
    install = shlex.split(runs.split(f"{version} -m pip install", 1)[1].split("&&")[0])
    assert install[install.index("-c") + 1] == "/tmp/job/constraints.txt"  # uv.lock's versions
    assert "dagster-pipes" in install
    assert not [p for p in install if p.split("==")[0] in ("dagster", "pyspark")]  # EMR's Spark; no Dagster
    assert any(keyword == "FROM" and "public.ecr.aws/emr-serverless/spark/" in args for keyword, args in steps)
    assert final_stage(steps)[-1] == ("USER", "hadoop:hadoop")  # EMR Serverless runs jobs as hadoop
    copied = [shlex.split(args)[0] for keyword, args in steps if keyword == "COPY"]
    assert copied == ["dist/constraints.txt", "dist/*.whl"]  # made by the commands in its header
    for source in copied:
        assert kept_by_dockerignore(source, REPO / "deploy" / "emr" / "Dockerfile.dockerignore")
