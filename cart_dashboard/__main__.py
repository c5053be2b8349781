"""``cart-dashboard`` (``python -m cart_dashboard``): serve the business dashboard over the marts."""

from __future__ import annotations

import argparse
import logging

from cart_dashboard.settings import DashboardSettings


def main(argv: list[str] | None = None) -> int:
    settings = DashboardSettings()
    parser = argparse.ArgumentParser(
        prog="cart-dashboard",
        description=(
            "Serve the cart lakehouse's dashboard: revenue, purchases, average ticket, buyers, installments, top "
            "categories and products from the gold marts (gold/sales_performance, gold/items_category_performance) "
            "read through DuckDB, the file drop's KPIs, and a health strip (Dagster runs and checks, freshness, "
            "quarantined rows, DLQ depth). It only reads the lake. The lake, Dagster and AWS come from the CART_* "
            "settings (README, Configuration). /healthz answers when it is up."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=int,
        default=settings.dashboard_port,
        help=f"port to listen on (default CART_DASHBOARD_PORT, now {settings.dashboard_port})",
    )
    parser.add_argument("--lake-root", help=f"lake to read (default CART_LAKE_ROOT, now {settings.lake_root})")
    parser.add_argument("--debug", action="store_true", help="Dash's debug mode: reload on change, errors in the page")
    args = parser.parse_args(argv)
    if args.lake_root:
        settings = DashboardSettings(lake_root=args.lake_root)

    from cart_dashboard.app import create_app  # Dash and the data layer load only to serve, not for --help

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request (the page refreshes each minute)
    app = create_app(settings)
    print(f"cart-dashboard: http://{args.host}:{args.port}/ (lake {settings.lake_root})", flush=True)
    app.run(host=args.host, port=args.port, debug=args.debug)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
