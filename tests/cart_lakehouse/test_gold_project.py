"""The gold dbt project's manifest is prepared again under ``dagster dev`` only when a file of the
project is newer than it (what ``make``'s rule for it does)."""

from __future__ import annotations

import os
from pathlib import Path

from dagster_dbt import DbtProject

from cart_lakehouse.gold_project import manifest_is_current


def at(path: Path, seconds: int, text: str = "-- a file\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text(text)
    os.utime(path, ns=(seconds * 10**9, seconds * 10**9))
    return path


def test_the_manifest_is_current_until_a_file_of_the_project_is_newer(tmp_path: Path) -> None:
    at(tmp_path / "dbt_project.yml", 100, "name: gold\nprofile: gold\n")
    at(tmp_path / "models" / "gold" / "sales_hourly.sql", 100)
    project = DbtProject(project_dir=tmp_path, profiles_dir=tmp_path)
    assert not manifest_is_current(project)  # none yet

    at(project.manifest_path, 200)
    assert manifest_is_current(project)
    at(tmp_path / "target" / "run" / "later.sql", 300)  # what dbt writes is not a source
    at(tmp_path / "logs" / "dbt.log", 300)
    assert manifest_is_current(project)

    at(tmp_path / "models" / "gold" / "sales_hourly.sql", 300)  # an edited model
    assert not manifest_is_current(project)
    at(project.manifest_path, 400)  # parsed again
    assert manifest_is_current(project)
    at(tmp_path / "macros" / "new.sql", 500)  # a new file
    assert not manifest_is_current(project)
