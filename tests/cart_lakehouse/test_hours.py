"""Hour helpers: period keys of a timestamp column are what strftime per row makes."""

from datetime import UTC, datetime, timedelta

import pyarrow as arrow
import pyarrow.compute as pc
import pytest

from cart_lakehouse.hours import period_keys


@pytest.mark.parametrize(("unit", "fmt"), [("hour", "%Y-%m-%dT%H"), ("day", "%Y-%m-%d")])
def test_period_keys_equal_strftime_per_row(unit: str, fmt: str) -> None:
    start = datetime(2026, 11, 28, 22, 59, 59, 999999, tzinfo=UTC)
    values = [start + timedelta(minutes=7 * i, microseconds=i) for i in range(300)] + [None, start]
    column = arrow.array(values, arrow.timestamp("us", tz="UTC"))
    keys = period_keys(column, unit, fmt)
    assert keys.to_pylist() == pc.strftime(column, format=fmt).to_pylist()
    assert len(set(keys.to_pylist())) > 2  # several periods, crossing midnight, and a null kept null
