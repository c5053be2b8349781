"""The operations runbook (docs/operations.md) is followed under pressure: every alarm the stack
defines must be in it, and every command, resource name, setting, asset selection and sensor it
names must exist."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path
from typing import Any

from cart_api.settings import Settings
from cart_aws.resources import cart_stack
from cart_aws.settings import AwsSettings
from cart_dashboard.settings import DashboardSettings
from cart_lakehouse.partitions import Hour
from cart_lakehouse.settings import LakeSettings

ROOT = Path(__file__).resolve().parents[1]
RUNBOOK = (ROOT / "docs" / "operations.md").read_text()
SCRIPTS = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"])
MAKE_TARGETS = set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), flags=re.MULTILINE))
# code: fenced blocks and inline spans, where commands and names are written to be copied
CODE = "\n".join(
    re.findall(r"^```[a-z]*\n(.*?)^```", RUNBOOK, flags=re.MULTILINE | re.DOTALL)
    + re.findall(r"`([^`\n]+)`", re.sub(r"^```.*?^```", "", RUNBOOK, flags=re.MULTILINE | re.DOTALL))
)
STACK = cart_stack(AwsSettings())
# cart-* names that are neither commands nor described resources
OTHER_NAMES = {
    "cart-prod": "the stack's name in the README's deploy command",
    "cart-platform": "the owner team (team:cart-platform)",
}
# what a deployed or restored name adds to a described one
SUFFIXES = re.compile(r"(-prod)?(-restored)?$")


def resource_names() -> set[str]:
    s = STACK
    groups: list[tuple[Any, ...]] = [
        s.topics,
        s.queues,
        s.tables,
        s.buckets,
        s.alarms,
        s.functions,
        s.secrets,
        s.user_pools,
        s.metric_alarms,
        s.log_archives,
    ]
    return {r.name for group in groups for r in group} | {n.id for n in s.notifications}


def test_every_alarm_of_the_stack_is_in_the_runbook() -> None:
    alarms = {a.name for a in STACK.alarms} | {a.name for a in STACK.metric_alarms}
    assert len(alarms) >= 6
    missing = {a for a in alarms if f"`{a}`" not in RUNBOOK}
    assert not missing, f"alarms defined in cart_aws/resources.py but not explained in docs/operations.md: {missing}"


def test_every_command_it_names_exists() -> None:
    venv_bin = Path(sys.executable).parent
    run = set(re.findall(r"\buv run (?:--locked )?([\w.-]+)", CODE))
    assert {"dagster", "python"} <= run
    assert not {c for c in run if c not in SCRIPTS and not (venv_bin / c).exists()}
    make = set(re.findall(r"\bmake ([a-z][a-z-]*)", CODE))
    assert make
    assert make <= MAKE_TARGETS, f"make targets named but not in the Makefile: {make - MAKE_TARGETS}"
    modules = set(re.findall(r"-m ([a-z_]+(?:\.[a-z_]+)*)", CODE))
    assert modules == {"cart_lakehouse.definitions"}


def test_every_cart_name_is_a_command_or_a_described_resource() -> None:
    """A typo in a queue, table, alarm or command name would send the engineer after nothing."""
    described = resource_names() | set(OTHER_NAMES)
    names = set(re.findall(r"\bcart-[a-z0-9-]*[a-z0-9]", RUNBOOK))
    unknown = {n for n in names - SCRIPTS - described if SUFFIXES.sub("", n) not in described}
    assert not unknown, f"names in docs/operations.md that are neither a cart-* script nor a resource: {unknown}"
    assert {"cart-api-keys", "cart-purchases", "cart-purchases-dlq", "cart-alerts"} <= {
        SUFFIXES.sub("", n) for n in names
    }


def test_every_setting_it_names_exists() -> None:
    fields = {**Settings.model_fields, **LakeSettings.model_fields, **DashboardSettings.model_fields}
    known = {f"CART_{name.upper()}" for name in fields}
    named = set(re.findall(r"\bCART_[A-Z_]+[A-Z]", RUNBOOK))
    assert named - known == set()


def test_its_dagster_commands_select_the_hourly_job_and_name_real_sensors_and_partitions() -> None:
    # imported here: the definitions take seconds to load, and only this test needs them
    from dagster import AssetSelection

    from cart_lakehouse.definitions import defs

    graph = defs.resolve_asset_graph()
    job = {k.to_user_string() for k in defs.resolve_job_def("hourly_lakehouse").asset_layer.selected_asset_keys}
    selections = re.findall(r"--select '([^']+)'", CODE)
    assert len(selections) >= 2
    for selection in selections:
        keys = {k.to_user_string() for k in AssetSelection.from_string(selection).resolve(graph)}
        # the hourly job's assets, or all of them but bronze (a rebuild from bronze)
        assert keys in (job, job - {"bronze/purchases"}), selection
    ranges = re.findall(r"--partition-range (\S+)\.\.\.(\S+)", CODE)
    singles = re.findall(r"--partition (\S+)", CODE)
    assert ranges
    assert singles
    for key in [k for r in ranges for k in r] + singles:
        assert Hour.from_key(key).key == key
    sensors = {s.name for s in defs.sensors or ()}
    named = set(re.findall(r"`([a-z_]+)` sensor", RUNBOOK))
    assert named
    assert named <= sensors, f"sensors named in docs/operations.md that do not exist: {named - sensors}"


def test_the_dependency_audit_section_is_there_for_make_audit_s_findings() -> None:
    assert re.search(r"^## Dependency audit$", RUNBOOK, flags=re.MULTILINE)
