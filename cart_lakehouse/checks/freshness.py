"""Freshness of the marts: how far each mart is behind its source, silver purchases.

The lag is the newest materialized hour of ``silver/purchases`` minus the newest materialized hour
of the mart, both read from the Dagster instance. It measures what the business sees: a mart is
late when silver has hours the mart does not show yet (a gold run that failed its dbt tests, a
stopped schedule), not when no purchases arrive (then both stand still and nothing is late).
Dagster's built-in freshness checks measure the time since the last update by the wall clock,
which would warn every quiet night; hence this check.

``fresh_vs_silver`` is declared on each mart (WARN, non-blocking), so the asset pages list it and a
person can run it by hand. The ``mart_freshness`` sensor evaluates it every few minutes without
launching a run, and alerts when a mart turns stale (``cart_lakehouse/sensors/freshness.py``).
The limit is ``CART_MART_FRESHNESS_HOURS`` (2 hours).
"""

from dataclasses import dataclass
from datetime import datetime

from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetKey,
    DagsterInstance,
    MetadataValue,
    asset_check,
)

from cart_lakehouse.settings import lake_settings

SOURCE = AssetKey(["silver", "purchases"])
MARTS = (AssetKey(["gold", "sales_performance"]), AssetKey(["gold", "items_category_performance"]))
CHECK_NAME = "fresh_vs_silver"
_PARTITION_FORMAT = "%Y-%m-%d-%H:%M"


def newest_partition(instance: DagsterInstance, key: AssetKey) -> str | None:
    """The newest hour partition of the asset that has been materialized (hour keys sort as text)."""
    keys = instance.get_materialized_partitions(key)
    return max(keys) if keys else None


@dataclass(frozen=True)
class Lag:
    """How far a mart is behind silver, in hours of partitions."""

    mart: AssetKey
    source_hour: str | None
    mart_hour: str | None
    limit_hours: float

    @property
    def hours(self) -> float | None:
        """None when the mart has never been built while silver has (infinitely behind)."""
        if self.source_hour is None:
            return 0.0
        if self.mart_hour is None:
            return None
        behind = datetime.strptime(self.source_hour, _PARTITION_FORMAT) - datetime.strptime(
            self.mart_hour, _PARTITION_FORMAT
        )
        return max(behind.total_seconds() / 3600, 0.0)

    @property
    def fresh(self) -> bool:
        return self.hours is not None and self.hours <= self.limit_hours

    @property
    def reason(self) -> str:
        name = self.mart.to_user_string()
        if self.source_hour is None:
            return f"{name}: silver has no materialized hour yet, so nothing can be behind it"
        if self.mart_hour is None:
            return f"{name} has never been materialized, while silver holds hours up to {self.source_hour}"
        verdict = "within" if self.fresh else "more than"
        return (
            f"{name} shows hours up to {self.mart_hour}, silver up to {self.source_hour}: "
            f"{self.hours:g} h behind, {verdict} the {self.limit_hours:g} h limit"
            + ("" if self.fresh else ". Materialize the missing hours of gold (or look at why its last run failed).")
        )

    def metadata(self) -> dict[str, MetadataValue]:
        return {
            "lag_hours": MetadataValue.float(-1.0 if self.hours is None else self.hours),
            "limit_hours": MetadataValue.float(self.limit_hours),
            "mart_newest_hour": MetadataValue.text(self.mart_hour or "never"),
            "silver_newest_hour": MetadataValue.text(self.source_hour or "never"),
        }


def mart_lag(instance: DagsterInstance, mart: AssetKey, limit_hours: float) -> Lag:
    return Lag(
        mart=mart,
        source_hour=newest_partition(instance, SOURCE),
        mart_hour=newest_partition(instance, mart),
        limit_hours=limit_hours,
    )


def evaluation(lag: Lag) -> AssetCheckEvaluation:
    """The check's result as the sensor reports it, outside any run."""
    return AssetCheckEvaluation(
        asset_key=lag.mart,
        check_name=CHECK_NAME,
        passed=lag.fresh,
        severity=AssetCheckSeverity.WARN,
        description=lag.reason,
        metadata=lag.metadata(),
    )


def _freshness_check(mart: AssetKey) -> AssetChecksDefinition:
    @asset_check(
        asset=mart,
        name=CHECK_NAME,
        blocking=False,
        description=(
            f"WARN when {mart.to_user_string()} is more than CART_MART_FRESHNESS_HOURS behind silver/purchases "
            "(newest materialized hour of each). The mart_freshness sensor evaluates it every few minutes."
        ),
    )
    def fresh_vs_silver(context: AssetCheckExecutionContext) -> AssetCheckResult:
        lag = mart_lag(context.instance, mart, lake_settings().mart_freshness_hours)
        return AssetCheckResult(
            passed=lag.fresh, severity=AssetCheckSeverity.WARN, description=lag.reason, metadata=lag.metadata()
        )

    return fresh_vs_silver


FRESHNESS_CHECKS = [_freshness_check(mart) for mart in MARTS]
