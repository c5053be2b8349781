"""The lakehouse's Dagster definitions: assembled here, defined in ``assets/``, ``checks/``, ``resources/``."""

from dagster import Definitions, in_process_executor, load_asset_checks_from_modules, load_assets_from_modules

from cart_lakehouse.assets import bronze, gold, products, quarantine, silver
from cart_lakehouse.automation import hourly_lakehouse_job, hourly_schedule
from cart_lakehouse.checks.freshness import FRESHNESS_CHECKS
from cart_lakehouse.checks.gates import QUALITY_GATES
from cart_lakehouse.filedrop import assets as filedrop
from cart_lakehouse.filedrop.checks import FILEDROP_GATES
from cart_lakehouse.filedrop.sensor import landing_files
from cart_lakehouse.resources import build_resources
from cart_lakehouse.sensors.alerts import alert_on_run_failure
from cart_lakehouse.sensors.dlq import dlq_redrive
from cart_lakehouse.sensors.freshness import mart_freshness
from cart_lakehouse.sensors.hour_closed import hour_closed
from cart_lakehouse.sensors.late_data import late_data
from cart_lakehouse.sensors.products_changed import products_changed, reference_products_job

ASSET_MODULES = [bronze, products, silver, gold, quarantine, filedrop]

# external assets (AssetSpec) are not picked up by load_assets_from_modules: listed here
EXTERNAL = [bronze.purchases_table, quarantine.dlq_quarantine, filedrop.landing_files]
ASSETS = [*EXTERNAL, *load_assets_from_modules(ASSET_MODULES)]
CHECKS = [*load_asset_checks_from_modules(ASSET_MODULES), *QUALITY_GATES, *FILEDROP_GATES, *FRESHNESS_CHECKS]

# Every run executes its steps in the run's own process: the default multiprocess executor loads
# the code (and starts Spark) again for each of the dozen steps of an hourly run, ~25 s each on
# two cores; one process shares one Spark session and one code load.
defs = Definitions(
    assets=ASSETS,
    asset_checks=CHECKS,
    jobs=[hourly_lakehouse_job, filedrop.filedrop_job, reference_products_job],
    schedules=[hourly_schedule],
    sensors=[
        alert_on_run_failure,
        dlq_redrive,
        hour_closed,
        late_data,
        landing_files,
        products_changed,
        mart_freshness,
    ],
    resources=build_resources(),
    executor=in_process_executor,
)
