"""The README is how newcomers start: its configuration table and commands must match the code."""

from __future__ import annotations

import json
import re
from pathlib import Path

from cart_api.settings import Settings
from cart_dashboard.settings import DashboardSettings
from cart_lakehouse.settings import LakeSettings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_configuration_table_lists_every_setting_with_its_default() -> None:
    rows = dict(re.findall(r"^\| `(CART_[A-Z_]+)` \| `([^`]*)` \|", README, flags=re.MULTILINE))
    expected = {}
    for name, field in {**Settings.model_fields, **LakeSettings.model_fields, **DashboardSettings.model_fields}.items():
        default = field.default
        if field.default_factory is not None:  # computed when read: the README says how
            default = rows.get(f"CART_{name.upper()}", "(missing)")
        expected[f"CART_{name.upper()}"] = json.dumps(default) if isinstance(default, dict) else str(default)
    assert rows == expected


def test_the_two_commands_exist_and_ci_calls_the_test_command() -> None:
    assert "make run" in README
    assert "make test" in README
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^run:", makefile, flags=re.MULTILINE)
    assert re.search(r"^test:", makefile, flags=re.MULTILINE)
    assert "make test" in (ROOT / ".ci" / "run").read_text()
