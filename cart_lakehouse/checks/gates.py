"""The quality gates of every silver and gold table, in one list for the definitions.

Each table gets the contract check of the factory (Pandera, generated from
``contracts/lakehouse.odcs.yaml``); silver and gold also get the reconciliation checks. All are
blocking: a failure keeps what depends on the table from materializing.
"""

from dagster import AssetChecksDefinition, AssetKey

from cart_lakehouse.checks import CheckedTable, contract_check, day_dirs, hour_dirs
from cart_lakehouse.checks.reconciliation import reconciliation_checks
from cart_lakehouse.layout import GOLD, SILVER, SILVER_QUARANTINE

CHECKED_TABLES = (
    CheckedTable(AssetKey(["silver", "purchases"]), "silver_purchases", SILVER, hour_dirs),
    CheckedTable(AssetKey(["silver", "purchases_quarantine"]), "silver_purchases_quarantine", SILVER_QUARANTINE),
    CheckedTable(AssetKey(["gold", "sales_hourly"]), "sales_hourly", f"{GOLD}/sales_hourly", day_dirs),
    CheckedTable(
        AssetKey(["gold", "sales_by_category_daily"]),
        "sales_by_category_daily",
        f"{GOLD}/sales_by_category_daily",
        day_dirs,
    ),
    CheckedTable(AssetKey(["gold", "buyer_daily"]), "buyer_daily", f"{GOLD}/buyer_daily", day_dirs),
)

QUALITY_GATES: list[AssetChecksDefinition] = [
    *(contract_check(table) for table in CHECKED_TABLES),
    *reconciliation_checks,
]
