"""The dbt project that builds gold (``dbt_project/``), as dagster-dbt sees it.

Its manifest is prepared by ``make setup`` (``dbt parse``), by ``dagster dev`` on a load that finds
it older than a file of the project (``prepare_if_dev``, so an edited model is picked up), and here
on import when it is missing, so the definitions always load.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dagster_dbt import DbtProject

from cart_lakehouse.settings import lake_settings

REPO = Path(__file__).resolve().parents[1]


def project_dir() -> Path:
    configured = Path(lake_settings().dbt_project_dir).expanduser()
    return configured if configured.is_absolute() else REPO / configured


def prepare(project: DbtProject) -> Path:
    """Write the manifest with ``dbt parse`` (a few seconds; no database is touched)."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dbt.cli.main",
            "parse",
            "--quiet",
            "--project-dir",
            str(project.project_dir),
            "--profiles-dir",
            str(project.profiles_dir),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 or not project.manifest_path.exists():
        raise RuntimeError(f"dbt parse failed in {project.project_dir}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return project.manifest_path


def manifest_is_current(project: DbtProject) -> bool:
    """True if the manifest is newer than every file of the project (its target and logs folders
    aside), as make's rule for it has it: nothing in the project reads the environment, so nothing
    else changes what ``dbt parse`` writes."""
    manifest = project.manifest_path
    if not manifest.exists():
        return False
    built = manifest.stat().st_mtime_ns
    generated = [project.project_dir / project.target_path, project.project_dir / "logs"]
    for path in project.project_dir.rglob("*"):
        if any(path.is_relative_to(folder) for folder in generated) or not path.is_file():
            continue
        if path.stat().st_mtime_ns > built:
            return False
    return True


GOLD_PROJECT = DbtProject(project_dir=project_dir(), profiles_dir=project_dir())
# under dagster dev every process that loads the definitions (the code server, and each run's own
# process) prepares the manifest: dbt --version and dbt parse, about 8 s of CPU, for nothing when
# no file of the project changed since the last parse
if not manifest_is_current(GOLD_PROJECT):
    GOLD_PROJECT.prepare_if_dev()
if not GOLD_PROJECT.manifest_path.exists():
    prepare(GOLD_PROJECT)
