"""The dashboard page: Dash layout and callbacks over the data layer (``data.py``) and the health strip.

Dash was chosen (docs/design/issue-11-star-schema-marts-dashboard.md, section 4) because each
component's ``id`` becomes its DOM id, which gives the browser test stable selectors, because its
callbacks are plain functions (``render_figures``, ``render_health``) that tests call without a
browser, and because it is a Flask app the supervisor runs like the API.

The element ids are the browser test's interface; change them only together with
``tests/cart_dashboard/test_browser.py``. The layout is built per page load, so a page opened after
``make run`` bootstrapped the lake shows its figures; before that it shows ``empty-state``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

# numpy and pandas are imported before the server's threads start: plotly's JSON encoder uses them
# when sys.modules has them, and a request thread once found pandas half-imported by another
# (a lazy import in a callback) and failed the page ("partially initialized module 'pandas'").
import numpy  # noqa: F401
import pandas  # noqa: F401
from dash import Dash, Input, Output, dcc, html
from flask import jsonify

from cart_dashboard.data import Filters, Marts, Page, Point, filters_of, money
from cart_dashboard.health import Health, Item
from cart_dashboard.settings import DashboardSettings
from cart_lakehouse.lake import Lake

EMPTY_MESSAGE = (
    "No data yet: run `make run`, which bootstraps a few hours, or materialize gold/sales_performance "
    "(the hourly_lakehouse job in the Dagster UI)."
)
KPIS = (
    ("kpi-revenue", "Revenue"),
    ("kpi-purchases", "Purchases"),
    ("kpi-average-ticket", "Average ticket"),
    ("kpi-new-buyers", "New buyers"),
    ("kpi-returning-buyers", "Returning buyers"),
)
HEALTH_KEYS = ("bronze", "silver", "gold", "marts", "freshness", "quarantine", "dlq", "failed-checks")
REFRESH_MS = 60_000  # figures and health are asked again every minute while the page is open
GRAPH_CONFIG: dcc.Graph.Config = {"displayModeBar": False}  # plotly's toolbar would sit on the legend
COLORS = {"revenue": "#2563eb", "purchases": "#f59e0b", "new": "#16a34a", "returning": "#9333ea"}


def _key(value: str) -> dict[str, Any]:
    """A table row's ``data-key`` attribute: how the browser test finds a category's or product's row."""
    return {"data-key": value}


def _percent(share: float) -> str:
    return f"{share * 100:.1f} %"


def _table(header: Sequence[str], rows: list[Any], empty: str) -> html.Table | html.P:
    if not rows:
        return html.P(empty, className="muted")
    return html.Table([html.Thead(html.Tr([html.Th(h) for h in header])), html.Tbody(rows)], className="grid")


def _x(page: Page, points: Sequence[Point]) -> list[str]:
    """The periods as plotly reads them: days as dates (no 00:00 on the axis), hours as times."""
    if page.filters.grain == "day":
        return [p.period.date().isoformat() for p in points]
    return [p.period.isoformat() for p in points]


def _series_figure(page: Page) -> dict[str, Any]:
    """Revenue (bars) and purchases (line, second axis) per period; one revenue line per chosen category."""
    layout: dict[str, Any] = {
        "margin": {"l": 50, "r": 50, "t": 30, "b": 40},
        "legend": {"orientation": "h", "y": 1.12},
        "yaxis": {"title": {"text": "revenue"}, "rangemode": "tozero"},
        "yaxis2": {
            "title": {"text": "purchases"},
            "overlaying": "y",
            "side": "right",
            "showgrid": False,
            "rangemode": "tozero",
        },
        "hovermode": "x unified",
    }
    data: list[dict[str, Any]] = []
    if page.filters.categories:
        for category in page.filters.categories:
            points = [p for p in page.series if p.series == category]
            data.append(
                {
                    "type": "scatter",
                    "mode": "lines+markers",
                    "name": f"{category} revenue",
                    "x": [p.period.date().isoformat() for p in points],  # per day
                    "y": [float(p.revenue) for p in points],  # plotted only; the text shows the Decimal
                    "text": [money(p.revenue) for p in points],
                    "hovertemplate": "%{text}",
                }
            )
        return {"data": data, "layout": layout}
    points = page.series
    x = _x(page, points)
    data += [
        {
            "type": "bar",
            "name": "revenue",
            "x": x,
            "y": [float(p.revenue) for p in points],
            "text": [money(p.revenue) for p in points],
            "hovertemplate": "%{text}",
            "textposition": "none",
            "marker": {"color": COLORS["revenue"]},
        },
        {
            "type": "scatter",
            "mode": "lines",
            "name": "purchases",
            "x": x,
            "y": [p.purchases for p in points],
            "yaxis": "y2",
            "line": {"color": COLORS["purchases"]},
        },
    ]
    if page.filters.grain == "day":
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": "revenue, 7-day average",
                "x": x,
                "y": [p.revenue_7d_avg for p in points],
                "line": {"dash": "dot", "color": COLORS["revenue"]},
            }
        )
    return {"data": data, "layout": layout}


def _buyers_figure(page: Page) -> dict[str, Any]:
    points = page.buyers
    x = _x(page, points)
    return {
        "data": [
            {
                "type": "bar",
                "name": "new",
                "x": x,
                "y": [p.new_buyers for p in points],
                "marker": {"color": COLORS["new"]},
            },
            {
                "type": "bar",
                "name": "returning",
                "x": x,
                "y": [p.returning_buyers for p in points],
                "marker": {"color": COLORS["returning"]},
            },
        ],
        "layout": {
            "barmode": "stack",
            "margin": {"l": 50, "r": 20, "t": 30, "b": 40},
            "legend": {"orientation": "h", "y": 1.15},
            "yaxis": {"title": {"text": "buyers"}},
        },
    }


def render_figures(
    marts: Marts, grain: str | None, start: str | None, end: str | None, categories: Sequence[str] | None
) -> tuple[Any, ...]:
    """The figures callback as a plain function: the filters in, every figure's content out (in the
    order of ``FIGURE_OUTPUTS``)."""
    filters = filters_of(start, end, grain, categories, marts.default_range())
    if filters is None:  # no data and no range: zeros, the page shows the empty-state message
        filters = Filters(date.today(), date.today(), "hour" if grain == "hour" else "day")
    page = marts.page(filters)
    k = page.kpis
    installments = [
        html.Tr(
            [
                html.Td(row.bucket),
                html.Td(str(row.purchases), className="purchases"),
                html.Td(_percent(row.share), className="share"),
                html.Td(html.Div(className="bar", style={"width": f"{row.share * 100:.1f}%"}), className="bar-cell"),
            ],
            **_key(row.bucket),
        )
        for row in page.installments
    ]
    categories_rows = [
        html.Tr(
            [
                html.Td(row.category, className="category"),
                html.Td(money(row.revenue), className="revenue"),
                html.Td(str(row.units), className="units"),
                html.Td(_percent(row.share), className="share"),
            ],
            **_key(row.category),
        )
        for row in page.top_categories
    ]
    product_rows = [
        html.Tr(
            [
                html.Td(f"{row.product_name} ({row.product_id})", className="product"),
                html.Td(row.category, className="category"),
                html.Td(money(row.revenue), className="revenue"),
                html.Td(str(row.units), className="units"),
            ],
            **_key(row.product_id),
        )
        for row in page.top_products
    ]
    if page.filedrop is None:
        filedrop: Any = html.P(
            "No file-drop KPIs yet: drop a file set (uv run cart-drop upload) and its KPIs appear here.",
            className="muted",
        )
    else:
        rows = [
            html.Tr(
                [
                    html.Td(str(r.order_date)),
                    html.Td(r.category, className="category"),
                    html.Td(money(r.daily_revenue), className="revenue"),
                    html.Td(money(r.avg_order_value), className="aov"),
                    html.Td(_percent(r.avg_return_rate), className="return-rate"),
                ],
                **_key(f"{r.order_date}/{r.category}"),
            )
            for r in page.filedrop.rows
        ]
        table = _table(["order date", "category", "revenue", "avg order", "return rate"], rows, "No rows.")
        filedrop = [html.P(page.filedrop.note, className="muted")] if page.filedrop.note else []
        filedrop = [*filedrop, table]
    return (
        money(k.revenue),
        str(k.purchases),
        money(k.average_ticket),
        str(k.new_buyers),
        str(k.returning_buyers),
        _series_figure(page),
        _buyers_figure(page),
        _table(["installments", "purchases", "share", ""], installments, "No purchases in this range."),
        _table(["category", "revenue", "units", "share"], categories_rows, "No sales in this range."),
        _table(["product", "category", "revenue", "units"], product_rows, "No sales in this range."),
        filedrop,
        [html.P(note, className="note") for note in page.notes],
        f"per {filters.grain}, summed",
    )


FIGURE_OUTPUTS = [
    *(Output(kpi, "children") for kpi, _ in KPIS),
    Output("revenue-chart", "figure"),
    Output("buyers-chart", "figure"),
    Output("installments-mix", "children"),
    Output("top-categories", "children"),
    Output("top-products", "children"),
    Output("filedrop-kpis", "children"),
    Output("notes", "children"),
    Output("buyers-grain", "children"),
]


def _health_span(item: Item) -> html.Span:
    body: list[Any] = [html.B(f"{item.label}: "), item.text]
    if item.link:
        body = [html.A(body, href=item.link, target="_blank")]
    return html.Span(body, id=f"health-{item.key}", className=f"health {item.status}", title=item.detail)


def render_health(health: Health, start: str | None, end: str | None) -> list[html.Span]:
    """The health callback as a plain function: one span per item (``health-<key>``)."""
    first = date.fromisoformat(start[:10]) if start else None
    last = date.fromisoformat(end[:10]) if end else None
    return [_health_span(item) for item in health.items(first, last)]


def _kpi(element: str, label: str) -> html.Div:
    extra = [html.Small("", id="buyers-grain", className="muted")] if element == "kpi-returning-buyers" else []
    return html.Div(
        [html.Div(label, className="label"), html.Div("–", id=element, className="value"), *extra], className="kpi"
    )


def layout(marts: Marts) -> html.Div:
    """The page, built at each load: the empty-state message until the marts have a file."""
    span = marts.default_range()
    days = marts.days()
    categories = marts.categories() if span else []
    placeholder = [html.Span([html.B(f"{k}: "), "…"], id=f"health-{k}", className="health") for k in HEALTH_KEYS]
    hidden = {"display": "none"} if span is None else {}
    return html.Div(
        [
            html.Header(
                [
                    html.H1("Cart lakehouse: sales"),
                    html.Span(
                        f"marts hold {days[0]} .. {days[-1]} (UTC)" if days else "marts are empty", className="muted"
                    ),
                ]
            ),
            html.Div(placeholder, id="health-strip", className="health-strip"),
            html.Div(
                [html.H2("No data yet"), dcc.Markdown(EMPTY_MESSAGE)],
                id="empty-state",
                className="empty",
                style={} if span is None else {"display": "none"},
            ),
            html.Div(
                [
                    html.Div(
                        [
                            html.Div(
                                [
                                    html.Label("Grain"),
                                    dcc.RadioItems(
                                        id="grain",
                                        options=[{"label": "hour", "value": "hour"}, {"label": "day", "value": "day"}],
                                        value="hour",
                                        inline=True,
                                    ),
                                ]
                            ),
                            html.Div(
                                [
                                    html.Label("Dates (UTC)"),
                                    dcc.DatePickerRange(
                                        id="date-range",
                                        start_date=span[0].isoformat() if span else None,
                                        end_date=span[1].isoformat() if span else None,
                                        min_date_allowed=days[0].isoformat() if days else None,
                                        max_date_allowed=days[-1].isoformat() if days else None,
                                        display_format="YYYY-MM-DD",
                                        first_day_of_week=1,
                                    ),
                                ]
                            ),
                            html.Div(
                                [
                                    html.Label("Categories (none ticked: all)"),
                                    dcc.Checklist(
                                        id="category",
                                        options=[{"label": c, "value": c} for c in categories],
                                        value=[],
                                        inline=True,
                                    ),
                                ]
                            ),
                        ],
                        className="filters",
                    ),
                    html.Div([_kpi(element, label) for element, label in KPIS], className="kpis"),
                    html.Div(id="notes"),
                    html.Div(
                        [
                            html.Div(
                                [html.H3("Revenue and purchases"), dcc.Graph(id="revenue-chart", config=GRAPH_CONFIG)],
                                className="panel wide",
                            ),
                            html.Div(
                                [html.H3("New vs returning buyers"), dcc.Graph(id="buyers-chart", config=GRAPH_CONFIG)],
                                className="panel",
                            ),
                        ],
                        className="row",
                    ),
                    html.Div(
                        [
                            html.Div([html.H3("Top categories"), html.Div(id="top-categories")], className="panel"),
                            html.Div([html.H3("Top products"), html.Div(id="top-products")], className="panel"),
                            html.Div([html.H3("Installments mix"), html.Div(id="installments-mix")], className="panel"),
                        ],
                        className="row",
                    ),
                    html.Div(
                        [html.H3("File-drop KPIs (per category and order date)"), html.Div(id="filedrop-kpis")],
                        className="panel",
                    ),
                ],
                id="dashboard",
                style=hidden,
            ),
            dcc.Interval(id="refresh", interval=REFRESH_MS),
        ],
        className="page",
    )


def create_app(settings: DashboardSettings | None = None) -> Dash:
    """The Dash app over the lake and system of ``settings``; ``app.server`` is its Flask app."""
    settings = settings or DashboardSettings()
    lake = Lake.open(settings.lake_root, settings)
    marts = Marts(lake, settings)
    health = Health(settings.dagster_ui_url, settings, lake)
    app = Dash(__name__, title="Cart lakehouse", update_title="")
    app.layout = lambda: layout(marts)

    @app.callback(
        *FIGURE_OUTPUTS,
        Input("grain", "value"),
        Input("date-range", "start_date"),
        Input("date-range", "end_date"),
        Input("category", "value"),
        Input("refresh", "n_intervals"),
    )
    def figures(
        grain: str | None, start: str | None, end: str | None, categories: list[str] | None, _tick: int | None
    ) -> tuple[Any, ...]:
        return render_figures(marts, grain, start, end, categories)

    @app.callback(
        Output("health-strip", "children"),
        Input("refresh", "n_intervals"),
        Input("date-range", "start_date"),
        Input("date-range", "end_date"),
    )
    def health_strip(_tick: int | None, start: str | None, end: str | None) -> list[html.Span]:
        return render_health(health, start, end)

    def healthz() -> Any:
        return jsonify(status="ok")

    app.server.add_url_rule("/healthz", "healthz", healthz)  # what cart-dev and the tests wait on

    return app
