"""The ``mart_freshness`` sensor: evaluates each mart's ``fresh_vs_silver`` check without a run,
and alerts when a mart turns stale.

Every ``INTERVAL_SECONDS`` it reads the newest materialized hour of silver and of each mart from
the instance (``cart_lakehouse/checks/freshness.py``). An evaluation is reported (it shows on the
asset's Checks tab) only when a mart's lag changed since the last tick, so a quiet lake does not
fill the event log. A mart going from fresh to stale publishes one ``freshness`` alert to the
alerts SNS topic; it alerts again only after it has been fresh in between. The cursor holds each
mart's last reported state.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from dagster import DefaultSensorStatus, SensorEvaluationContext, SensorResult, SkipReason, sensor

from cart_lakehouse.alerts import Alert, publish_alert
from cart_lakehouse.checks.freshness import CHECK_NAME, MARTS, Lag, evaluation, mart_lag
from cart_lakehouse.resources import AwsResource

SENSOR_NAME = "mart_freshness"
INTERVAL_SECONDS = 300


@dataclass(frozen=True)
class Reported:
    """What the sensor last reported for a mart."""

    source_hour: str | None
    mart_hour: str | None
    fresh: bool


def _load(cursor: str | None) -> dict[str, Reported]:
    return {mart: Reported(**state) for mart, state in json.loads(cursor or "{}").items()}


def _dump(states: dict[str, Reported]) -> str:
    return json.dumps({mart: vars(state) for mart, state in sorted(states.items())})


def stale_alert(lag: Lag, ui_url: str) -> Alert:
    mart = lag.mart.to_user_string()
    return Alert(
        kind="freshness",
        title=f"Mart behind silver: {mart}",
        reason=lag.reason,
        assets=(mart,),
        run_url=f"{ui_url.rstrip('/')}/assets/{'/'.join(lag.mart.path)}?view=checks",
        details={"check": CHECK_NAME, "lag_hours": lag.hours, "limit_hours": lag.limit_hours},
    )


@sensor(
    name=SENSOR_NAME,
    minimum_interval_seconds=INTERVAL_SECONDS,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Evaluates the marts' fresh_vs_silver checks (lag behind silver over CART_MART_FRESHNESS_HOURS) without "
        "launching a run, and alerts on the alerts SNS topic when a mart turns stale."
    ),
)
def mart_freshness(context: SensorEvaluationContext, aws: AwsResource) -> SensorResult | SkipReason:
    settings = aws.settings()
    before = _load(context.cursor)
    after = dict(before)
    events = []
    for mart in MARTS:
        name = mart.to_user_string()
        lag = mart_lag(context.instance, mart, settings.mart_freshness_hours)
        now = Reported(lag.source_hour, lag.mart_hour, lag.fresh)
        if before.get(name) == now:
            continue
        after[name] = now
        events.append(evaluation(lag))
        previous = before.get(name)
        if not lag.fresh and (previous is None or previous.fresh):
            clients = aws.clients()
            message_id = publish_alert(
                clients.sns, clients.topic_arn(settings.alerts_topic), stale_alert(lag, settings.dagster_ui_url)
            )
            context.log.info(f"alert {message_id} published: {lag.reason}")
    if not events:
        return SkipReason("no mart's lag behind silver changed since the last tick")
    return SensorResult(asset_events=events, cursor=_dump(after))
