"""Where a step's time goes: named spans, reported as asset metadata.

Every lakehouse asset times its parts (the Spark job's stages, each write, the Glue registration,
dbt's startup and each model and test) and reports them as the ``timings`` metadata entry (seconds
per span, in order), so a slow run can be read off its asset page and ``bench/lakehouse.py`` can
print the profile of a run without a profiler.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any


class Timings:
    """Seconds per named span of one step, in the order the spans started (a repeated name adds up)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def span(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        self.seconds.setdefault(name, 0.0)
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def metadata(self) -> dict[str, Any]:
        # imported here: the Spark job times its stages with this class on EMR, where Dagster is absent
        from dagster import MetadataValue

        return {"timings": MetadataValue.json({k: round(v, 3) for k, v in self.seconds.items()})}


def dbt_node_seconds(run_results: Mapping[str, Any]) -> dict[str, float]:
    """Seconds per dbt node (``model.<name>``, ``test.<name>``) from dbt's ``run_results.json``:
    compile plus execute, as dbt timed them."""
    seconds: dict[str, float] = {}
    for result in run_results.get("results", []):
        parts = str(result.get("unique_id", "")).split(".")  # model.<project>.<name>, test.<project>.<name>.<hash>
        name = f"{parts[0]}.{parts[2]}" if len(parts) > 2 else ".".join(parts)
        seconds[name] = float(result.get("execution_time") or 0.0)
    return seconds
