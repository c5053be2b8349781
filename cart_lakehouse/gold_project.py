"""The dbt project that builds gold (``dbt_project/``), as dagster-dbt sees it.

Its manifest is prepared by ``make setup`` (``dbt parse``), by ``dagster dev`` on each load
(``prepare_if_dev``), and here on import when it is missing, so the definitions always load.
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


GOLD_PROJECT = DbtProject(project_dir=project_dir(), profiles_dir=project_dir())
GOLD_PROJECT.prepare_if_dev()
if not GOLD_PROJECT.manifest_path.exists():
    prepare(GOLD_PROJECT)
