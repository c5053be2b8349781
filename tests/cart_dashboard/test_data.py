"""The dashboard's data layer and page without a browser: figures against an independent computation
to the cent, the filters, the empty lake, the file-drop KPIs, and the 1 s budget of a page over 30
days of hourly marts. Mart files are contract-typed and written here (tests/cart_dashboard/marts.py),
no Spark and no dbt."""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as arrow
import pytest
from plotly.utils import PlotlyJSONEncoder

from cart_dashboard.app import create_app, layout, render_figures
from cart_dashboard.data import Filters, Marts, filters_of, money
from cart_dashboard.settings import DashboardSettings
from cart_lakehouse.filedrop.kpi_tables import merge_kpis
from cart_lakehouse.lake import Lake
from tests.cart_dashboard.marts import Purchase, draw, expected, write_marts

FIRST = datetime(2026, 11, 20, tzinfo=UTC)
DAYS = [FIRST.date() + timedelta(days=d) for d in range(3)]


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake.open(str(tmp_path / "lake"))


@pytest.fixture
def purchases(lake: Lake) -> list[Purchase]:
    """Three days, about 12 purchases an hour, every fifth hour without any."""
    drawn = draw(FIRST, hours=72, per_hour=12, seed=11, buyers=150, skip_every=5)
    write_marts(lake, drawn)
    return drawn


def as_json(component: Any) -> str:
    """A Dash component tree as the page receives it."""
    return json.dumps(component, cls=PlotlyJSONEncoder)


def assert_page_matches(page: Any, want: Any) -> None:
    assert page.kpis.revenue == want.revenue  # Decimal == Decimal: to the cent
    assert money(page.kpis.revenue) == f"{want.revenue:.2f}"
    assert page.kpis.purchases == want.purchases
    assert page.kpis.average_ticket == want.average_ticket
    assert {r.category: (r.revenue, r.units) for r in page.top_categories} == want.categories
    revenues = [r.revenue for r in page.top_categories]
    assert revenues == sorted(revenues, reverse=True)
    top = sorted(want.products.items(), key=lambda kv: (-kv[1][0], kv[0]))[:10]
    assert [(r.product_id, r.revenue, r.units) for r in page.top_products] == [(k, *v) for k, v in top]


@pytest.mark.parametrize("grain", ["hour", "day"])
def test_the_page_equals_an_independent_computation_to_the_cent(
    lake: Lake, purchases: list[Purchase], grain: str
) -> None:
    marts = Marts(lake)
    page = marts.page(Filters(DAYS[0], DAYS[-1], grain))  # type: ignore[arg-type]

    want = expected(purchases, DAYS[0], DAYS[-1], grain)
    assert_page_matches(page, want)
    assert (page.kpis.new_buyers, page.kpis.returning_buyers) == (want.new_buyers, want.returning_buyers)
    assert [r.purchases for r in page.installments] == want.installments
    assert sum(r.share for r in page.installments) == pytest.approx(1.0)
    assert sum((p.revenue for p in page.series), Decimal(0)) == want.revenue
    if grain == "hour":  # every hour of the range is on the chart, those without purchases at 0
        assert len(page.series) == 72
        assert page.series[4].revenue == 0
        assert page.series[4].purchases == 0
        assert [p.period for p in page.series] == [FIRST.replace(tzinfo=None) + timedelta(hours=h) for h in range(72)]
    else:
        assert [p.period.date() for p in page.series] == DAYS
    assert page.filedrop is None  # no file drop in this lake


def test_a_date_range_and_categories_filter_every_money_figure(lake: Lake, purchases: list[Purchase]) -> None:
    marts = Marts(lake)
    chosen = ("electronics", "home")

    page = marts.page(Filters(DAYS[1], DAYS[2], "day", chosen))

    want = expected(purchases, DAYS[1], DAYS[2], "day", chosen)
    assert_page_matches(page, want)
    assert set(want.categories) == set(chosen)
    assert {p.series for p in page.series} == set(chosen)  # one line per category, per day
    for category in chosen:
        assert sum((p.revenue for p in page.series if p.series == category), Decimal(0)) == want.categories[category][0]
    assert any("all categories" in note for note in page.notes)
    # buyers and installments are not per category: those of the whole range
    whole = expected(purchases, DAYS[1], DAYS[2], "day")
    assert page.kpis.new_buyers == whole.new_buyers
    assert sum(p.new_buyers or 0 for p in page.buyers) == whole.new_buyers  # the buyers chart too
    assert {p.series for p in page.buyers} == {"all"}
    assert [r.purchases for r in page.installments] == whole.installments


def test_the_callback_renders_the_figures_as_text_and_the_defaults_cover_the_data(
    lake: Lake, purchases: list[Purchase]
) -> None:
    marts = Marts(lake)
    assert marts.days() == DAYS
    assert marts.default_range() == (DAYS[0], DAYS[-1])
    assert marts.categories() == sorted({p.product.category for p in purchases})

    out = render_figures(marts, "day", None, None, None)  # no dates yet: the default range

    want = expected(purchases, DAYS[0], DAYS[-1], "day")
    revenue, count, ticket, new, returning = out[:5]
    assert (revenue, count, ticket) == (f"{want.revenue:.2f}", str(want.purchases), f"{want.average_ticket:.2f}")
    assert (new, returning) == (str(want.new_buyers), str(want.returning_buyers))
    top = as_json(out[8])
    best = max(want.categories.items(), key=lambda kv: kv[1][0])
    assert f'"data-key": "{best[0]}"' in top
    assert f"{best[1][0]:.2f}" in top
    filtered = render_figures(marts, "hour", DAYS[2].isoformat(), DAYS[2].isoformat(), ["books"])
    assert filtered[0] == f"{expected(purchases, DAYS[2], DAYS[2], 'hour', ['books']).revenue:.2f}"
    assert filtered[-1] == "per hour, summed"


def test_the_inputs_of_the_page_become_filters() -> None:
    fallback = (date(2026, 1, 1), date(2026, 1, 31))
    assert filters_of(None, None, None, None, None) is None
    assert filters_of(None, "2026-01-10", "hour", ["b", "a", "a"], fallback) == Filters(
        date(2026, 1, 1), date(2026, 1, 10), "hour", ("a", "b")
    )
    assert filters_of("2026-01-10T00:00:00", "2026-01-02", "weird", [], fallback) == Filters(
        date(2026, 1, 2), date(2026, 1, 10), "day", ()
    )


def test_a_replaced_day_file_is_read_again(lake: Lake, purchases: list[Purchase]) -> None:
    marts = Marts(lake)
    before = marts.page(Filters(DAYS[0], DAYS[-1])).kpis.revenue
    late = draw(FIRST + timedelta(hours=30), hours=1, per_hour=30, seed=99, buyers=150)
    write_marts(lake, [p for p in purchases if p.day == DAYS[1]] + late)  # day 2's files again, with late ones

    after = marts.page(Filters(DAYS[0], DAYS[-1])).kpis.revenue

    assert after == before + sum((p.amount for p in late), Decimal(0))


def test_an_empty_lake_answers_200_with_the_empty_state_and_no_trace(lake: Lake) -> None:
    app = create_app(DashboardSettings(lake_root=lake.root, dagster_ui_url="http://127.0.0.1:9"))
    client = app.server.test_client()

    assert client.get("/").status_code == 200
    answer = client.get("/_dash-layout")
    assert answer.status_code == 200
    body = answer.get_data(as_text=True)
    assert '"empty-state"' in body
    assert "No data yet: run `make run`" in body
    assert "Traceback" not in body
    assert client.get("/healthz").get_json() == {"status": "ok"}
    # the callbacks answer too, with zeros (the figures are hidden behind the message)
    assert render_figures(Marts(lake), None, None, None, None)[:5] == ("0.00", "0", "–", "0", "0")


def test_a_lake_with_data_hides_the_empty_state(lake: Lake, purchases: list[Purchase]) -> None:
    page = as_json(layout(Marts(lake)))
    assert '"start_date": "2026-11-20"' in page
    assert '"end_date": "2026-11-22"' in page
    assert '"id": "empty-state", "className": "empty", "style": {"display": "none"}' in page


def test_the_file_drop_kpis_of_the_range_or_else_the_latest_dates(lake: Lake, purchases: list[Purchase]) -> None:
    rows = arrow.table(
        {
            "category": ["books", "home", "books"],
            "order_date": [DAYS[1], DAYS[1], date(2026, 10, 1)],
            "daily_revenue": [1234.565, 99.9, 5.0],
            "avg_order_value": [61.72, 33.3, 5.0],
            "avg_return_rate": [0.1, 0.0, 0.5],
            "updated_by_set": ["s1", "s1", "s0"],
        }
    )
    merge_kpis(lake, "category_kpis", rows)
    marts = Marts(lake)

    page = marts.page(Filters(DAYS[0], DAYS[-1]))
    assert page.filedrop is not None
    assert page.filedrop.note is None
    assert [(str(r.order_date), r.category, money(r.daily_revenue)) for r in page.filedrop.rows] == [
        ("2026-11-21", "books", "1234.57"),
        ("2026-11-21", "home", "99.90"),
    ]
    assert [r.category for r in marts.page(Filters(DAYS[0], DAYS[-1], "day", ("home",))).filedrop.rows] == ["home"]  # type: ignore[union-attr]

    outside = marts.page(Filters(date(2026, 12, 1), date(2026, 12, 2)))
    assert outside.filedrop is not None
    assert outside.filedrop.note is not None
    assert "2026-10-01..2026-11-21" in outside.filedrop.note
    assert {str(r.order_date) for r in outside.filedrop.rows} == {"2026-11-21", "2026-10-01"}


def test_without_file_drop_kpis_the_page_says_how_to_get_them(lake: Lake, purchases: list[Purchase]) -> None:
    out = render_figures(Marts(lake), "day", None, None, None)
    assert "cart-drop upload" in as_json(out[10])


def test_a_full_page_over_30_days_of_hourly_marts_answers_within_one_second(tmp_path: Path) -> None:
    lake = Lake.open(str(tmp_path / "lake"))
    write_marts(lake, draw(FIRST - timedelta(days=30), hours=30 * 24, per_hour=20, seed=12, buyers=2000))
    marts = Marts(lake)
    assert len(marts.days()) == 30

    timings = []
    for grain, categories in (("hour", ()), ("day", ()), ("day", ("electronics",)), ("hour", ())):
        start = time.perf_counter()
        span = marts.default_range()
        assert span is not None
        marts.categories()
        page = marts.page(Filters(span[0], span[1], grain, categories))  # type: ignore[arg-type]
        timings.append(time.perf_counter() - start)
        assert page.kpis.purchases > 0

    cold, warm = timings[0], max(timings[1:])
    print(f"\n30 days of hourly marts, a full page of queries: first {cold:.3f} s (files read), then {warm:.3f} s")
    assert cold < 1.0
    assert warm < 1.0
