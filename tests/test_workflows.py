"""The GitHub Actions workflows (.github/workflows) against the Makefile they drive: every `make`
target a step runs exists, and the release cannot deploy without its build and the approval of the
`production` environment. actionlint (in `make lint`) checks their syntax, expressions and actions;
this checks what it cannot know about the project."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from cart_aws.resources import cart_stack
from cart_aws.settings import AwsSettings
from cart_aws.template import render

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
MAKEFILE = (ROOT / "Makefile").read_text()
MAKE_TARGETS = set(re.findall(r"^([a-z][a-z0-9-]*):", MAKEFILE, flags=re.MULTILINE))
PHONY = {name for line in re.findall(r"^\.PHONY:(.*)$", MAKEFILE, flags=re.MULTILINE) for name in line.split()}


def load(path: Path) -> dict[Any, Any]:
    # PyYAML reads the key `on` as the boolean True (YAML 1.1): the triggers are workflow[True]
    workflow: dict[Any, Any] = yaml.safe_load(path.read_text())
    return workflow


def run_scripts(workflow: dict[str, Any]) -> list[str]:
    """Every step's `run:` script, with the scripts of the repository a step runs (`bash .ci/run`)."""
    scripts = []
    for job in workflow["jobs"].values():
        for step in job.get("steps", []):
            script = step.get("run", "")
            scripts.append(script)
            scripts += [(ROOT / path).read_text() for path in re.findall(r"\bbash (\S+)", script)]
    return scripts


def make_targets_called(script: str) -> list[str]:
    targets = []
    for line in script.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        for i, word in enumerate(words):
            if word == "make":
                targets += [w for w in words[i + 1 :] if "=" not in w and not w.startswith("-")][:1]
    return targets


def jobs(name: str) -> dict[str, dict[str, Any]]:
    workflow_jobs: dict[str, dict[str, Any]] = load(ROOT / ".github" / "workflows" / name)["jobs"]
    return workflow_jobs


def needs(job: dict[str, Any]) -> set[str]:
    value = job.get("needs", [])
    return {value} if isinstance(value, str) else set(value)


def test_there_are_the_ci_and_the_release_workflows() -> None:
    assert {path.name for path in WORKFLOWS} >= {"ci.yml", "release.yml", "audit.yml"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_every_make_target_a_workflow_calls_exists(path: Path) -> None:
    called = [target for script in run_scripts(load(path)) for target in make_targets_called(script)]
    assert called, f"{path.name} runs no make target"
    missing = sorted(set(called) - MAKE_TARGETS)
    assert not missing, f"{path.name} calls make targets the Makefile does not have: {missing}"
    assert set(called) <= PHONY  # a file of that name would silently skip the step


def test_the_parser_finds_make_targets_and_the_makefile_lacks_an_invented_one() -> None:
    assert make_targets_called('make package\nfoo && make -s template ARGS="--x" \\\n  X=1 # make nothing') == [
        "package",
        "template",
    ]
    assert "deploy-everything" not in MAKE_TARGETS
    assert {"test", "package", "template", "audit", "lint", "browser"} <= MAKE_TARGETS


def test_pull_requests_run_the_readmes_test_command() -> None:
    ci = load(ROOT / ".github" / "workflows" / "ci.yml")
    assert "pull_request" in ci[True]
    assert "test" in [target for script in run_scripts(ci) for target in make_targets_called(script)]


def test_the_deploy_needs_the_build_and_the_approval_environment() -> None:
    release = jobs("release.yml")
    deploying = {name: job for name, job in release.items() if "cloudformation deploy" in str(job.get("steps", ""))}
    assert list(deploying) == ["deploy"]
    deploy = deploying["deploy"]
    environment = deploy.get("environment")
    # the required reviewers of this environment (repository settings) are the manual approval
    assert (environment["name"] if isinstance(environment, dict) else environment) == "production"
    assert "build" in needs(deploy)
    # an `if:` with always() or failure() would run it after a failed or skipped build
    assert not re.search(r"always\(\)|failure\(\)|cancelled\(\)", str(deploy.get("if", "")))
    assert deploy["concurrency"]["cancel-in-progress"] is False  # a deploy is never cut off halfway


def test_the_build_needs_the_tests_and_publishes_what_the_deploy_uses() -> None:
    release = jobs("release.yml")
    assert {"test", "audit"} <= needs(release["build"])
    assert release["test"]["uses"] == "./.github/workflows/ci.yml"
    assert release["audit"]["uses"] == "./.github/workflows/audit.yml"
    build_targets = [t for s in run_scripts({"jobs": {"build": release["build"]}}) for t in make_targets_called(s)]
    assert {"package", "template"} <= set(build_targets)
    build_steps = str(release["build"]["steps"])
    assert "deploy/dagster/Dockerfile" in build_steps
    assert "dist/lambda/api.zip" in build_steps
    assert "dist/lambda/worker.zip" in build_steps


def test_aws_credentials_come_from_oidc_and_each_job_asks_only_what_it_needs() -> None:
    for path in WORKFLOWS:
        workflow = load(path)
        text = path.read_text()
        assert "aws-access-key-id" not in text, f"{path.name}: AWS credentials come from OIDC, not keys"
        assert "AWS_SECRET_ACCESS_KEY" not in text, f"{path.name}: AWS credentials come from OIDC, not keys"
        assert "permissions" in workflow, f"{path.name}: no top-level permissions"
        for name, job in workflow["jobs"].items():
            uses_aws = "configure-aws-credentials" in str(job.get("steps", ""))
            granted = job.get("permissions", workflow["permissions"]) or {}
            assert (granted.get("id-token") == "write") == uses_aws, f"{path.name} {name}: id-token"
            assert "write" not in {v for k, v in granted.items() if k != "id-token"}, f"{path.name} {name}"


def test_the_deploy_can_set_every_parameter_of_the_template() -> None:
    """A parameter the deploy never passes can only ever hold its default (or a value set by hand)."""
    parameters = set(render(cart_stack(AwsSettings.model_construct()))["Parameters"])
    (deploy_script,) = [s for s in run_scripts({"jobs": {"deploy": jobs("release.yml")["deploy"]}}) if "deploy" in s]
    passed = set(re.findall(r'"(\w+)=\$', deploy_script))
    assert parameters == passed
