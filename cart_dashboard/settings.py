"""Settings of the dashboard, read from ``CART_*`` environment variables like the rest.

The dashboard reads the lake (``CART_LAKE_ROOT``), asks Dagster (``CART_DAGSTER_UI_URL``) and SQS
about the system's health, and serves its page on ``CART_DASHBOARD_PORT``.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field

from cart_lakehouse.settings import LakeSettings


class DashboardSettings(LakeSettings):
    """Lake settings plus where the dashboard is served."""

    dashboard_port: int = Field(
        default=8050, ge=1, le=65535, description="Port of the dashboard (cart-dashboard; make run serves it)."
    )


@lru_cache(maxsize=1)
def dashboard_settings() -> DashboardSettings:
    return DashboardSettings()
