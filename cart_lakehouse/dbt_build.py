"""``dbt build`` inside the Dagster step's process, with the project parsed once per process.

dagster-dbt's ``DbtCliResource.cli`` starts a dbt process for every run: about 4 s of imports and
then a full parse, because each run passes its window as ``--vars`` and changed vars defeat dbt's
partial parsing. For one hour of gold that was 18 s of a 20 s step (``bench/lakehouse.py
--profile``), against about 2 s of dbt's own work. Here dbt's programmatic entry point
(``dbtRunner``) runs the build with a manifest parsed once in this process (the project holds no
var at parse time: the silver source is a view the run creates, see ``dbt_project/macros/gold.sql``),
and dbt's result events go through dagster-dbt's own translation
(``DbtCoreCliEventMessage.to_default_asset_events``), so the Outputs, asset checks and their
metadata are exactly what dagster-dbt yields from its subprocess.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster import AssetExecutionContext
from dagster_dbt import DagsterDbtTranslator, DbtCliResource
from dagster_dbt.asset_utils import get_updated_cli_invocation_params_for_context
from dagster_dbt.core.dbt_cli_event import DbtCoreCliEventMessage

# the dbt events dagster-dbt turns into Dagster events (dagster_dbt.core.dbt_cli_event)
RESULT_EVENTS = frozenset({"LogModelResult", "LogTestResult", "LogSeedResult", "LogSnapshotResult"})
PARTIAL_PARSE_FILE = "partial_parse.msgpack"

_lock = threading.Lock()  # dbt keeps its invocation's flags and adapter in process-wide state
_manifests: dict[tuple[str, str, str], Any] = {}


@dataclass
class DbtBuild:
    """What one in-process ``dbt build`` did."""

    events: list[Any]  # Dagster events: an Output per model, an AssetCheckResult per test
    success: bool
    error: str | None
    run_results: Mapping[str, Any]
    seconds: float  # the build, parse excluded
    parse_seconds: float  # 0 when this process had parsed the project already
    manifest: Mapping[str, Any]  # the assets' dbt manifest (what dagster-dbt translated with)


def _args(dbt: DbtCliResource, target_path: Path) -> list[str]:
    args = [
        "--project-dir",
        str(dbt.project_dir),
        "--profiles-dir",
        str(dbt.profiles_dir or dbt.project_dir),
        "--target-path",
        str(target_path),
        "--log-path",
        str(target_path),
        "--log-level",
        "warn",  # warnings and errors reach the step's output, as dagster-dbt's subprocess showed them
        "--log-level-file",
        "none",
    ]
    if dbt.target:
        args += ["--target", dbt.target]
    return args


def parsed_manifest(dbt: DbtCliResource, target_path: Path) -> tuple[Any, float]:
    """The project's manifest, parsed in this process on first use (partially, from the project's
    own ``partial_parse.msgpack`` when ``make setup`` or Dagster's load left one)."""
    from dbt.cli.main import dbtRunner

    key = (str(dbt.project_dir), str(dbt.profiles_dir), str(dbt.target))
    if key in _manifests:
        return _manifests[key], 0.0
    started = time.perf_counter()
    prepared = Path(dbt.project_dir) / "target" / PARTIAL_PARSE_FILE
    if prepared.exists():
        target_path.mkdir(parents=True, exist_ok=True)
        shutil.copy(prepared, target_path / PARTIAL_PARSE_FILE)
    # the manifest stays in this process: its JSON file is not needed (writing it took 0.4 s)
    result = dbtRunner().invoke(["parse", "--no-write-json", *_args(dbt, target_path)])
    if not result.success or result.result is None:
        raise RuntimeError(f"dbt parse failed in {dbt.project_dir}: {result.exception}")
    _manifests[key] = result.result
    return result.result, time.perf_counter() - started


def dbt_build(
    context: AssetExecutionContext, dbt: DbtCliResource, dbt_vars: Mapping[str, Any], target_path: Path
) -> DbtBuild:
    """``dbt build --vars <dbt_vars>`` of the step's selected models and tests (dagster-dbt's own
    selection for the context, as ``DbtCliResource.cli`` computes it), in this process; its results
    as dagster-dbt's events."""
    from dbt.cli.main import dbtRunner
    from dbt_common.events.functions import msg_to_dict

    params = get_updated_cli_invocation_params_for_context(
        context=context, manifest={}, dagster_dbt_translator=DagsterDbtTranslator()
    )
    selection = list(params.selection_args)
    # dbt's default (eager) also runs a test of which only one parent is selected: building
    # star/dim_product alone would run fact_purchases' relationships test against a fact this run
    # did not build (an error, or worse, a stale table left in the process's in-memory DuckDB by an
    # earlier run). cautious runs the tests whose parents are all selected: every test of a full run.
    selection += ["--indirect-selection", params.indirect_selection or "cautious"]

    raw: list[dict[str, Any]] = []

    def collect(message: Any) -> None:
        if message.info.name in RESULT_EVENTS:
            raw.append(msg_to_dict(message))

    with _lock:
        manifest, parse_seconds = parsed_manifest(dbt, target_path)
        started = time.perf_counter()
        result = dbtRunner(manifest=manifest, callbacks=[collect]).invoke(
            ["build", "--vars", json.dumps(dict(dbt_vars)), *selection, *_args(dbt, target_path)]
        )
        seconds = time.perf_counter() - started
    results_file = target_path / "run_results.json"
    run_results = json.loads(results_file.read_text()) if results_file.exists() else {}
    events = [
        event
        for raw_event in raw
        for event in DbtCoreCliEventMessage(raw_event=raw_event, event_history_metadata={}).to_default_asset_events(
            manifest=params.manifest,
            dagster_dbt_translator=params.dagster_dbt_translator,
            context=context,
            target_path=target_path,
            project=params.dbt_project,
        )
    ]
    failed = [
        f"{r.get('unique_id')}: {r.get('message')}"
        for r in run_results.get("results", [])
        if r.get("status") in ("error", "fail", "runtime error")
    ]
    error = None
    if not result.success:
        error = str(result.exception) if result.exception else "; ".join(failed) or "dbt build failed"
    return DbtBuild(events, bool(result.success), error, run_results, seconds, parse_seconds, params.manifest)
