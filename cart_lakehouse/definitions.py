"""The lakehouse's Dagster definitions: assembled here, defined in ``assets/``, ``checks/``, ``resources/``."""

from dagster import Definitions, load_asset_checks_from_modules, load_assets_from_modules

from cart_lakehouse.assets import bronze
from cart_lakehouse.resources import build_resources
from cart_lakehouse.sensors.alerts import alert_on_run_failure

ASSET_MODULES = [bronze]

defs = Definitions(
    assets=load_assets_from_modules(ASSET_MODULES),
    asset_checks=load_asset_checks_from_modules(ASSET_MODULES),
    sensors=[alert_on_run_failure],
    resources=build_resources(),
)
