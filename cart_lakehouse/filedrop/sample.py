"""Realistic, seeded file-drop sets, and one faulty variant of a set per validation rule.

``generate_set()`` writes the three CSV files a shop exports (orders, order items, products) as
``{S3 key: bytes}``: the same arguments give the same bytes. Orders have 1–4 items each, a
realistic mix of statuses and consistent timestamps (shipped after created, delivered after
shipped, returned after delivered); products are the catalogue of ``cart_lakehouse/data/products.csv``
(P0001..P0200: ids, names, categories, brands, departments and retail prices) so file-drop products
and the purchases' products dimension agree. Generation is vectorised (NumPy and Arrow): a million
order items take a few seconds.

Order ids carry the seed (``O7-0000001``): generating again with the same seed is a re-drop of the
same orders; another seed gives new orders.

``FAULTS`` maps each rule name that ``cart_lakehouse.filedrop.validation`` reports to a function
turning a valid set into one that breaks exactly that rule (and nothing else), for tests and for
``cart-drop upload --fault``.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pyarrow as arrow
import pyarrow.compute as pc
import pyarrow.csv as arrow_csv

from cart_lakehouse.filedrop.layout import TABLES, landing_prefix, table_of
from cart_lakehouse.jobs.products import products_table
from contracts import load_contract

DEFAULT_START = date(2026, 11, 1)
SIZE_LIMIT_FAULT_BYTES = 1 << 20
"""The limit ``FAULTS["size limit"]`` exceeds: validate that fault with ``max_bytes`` at most this."""

# (status, share of orders): mostly delivered or shipped, some cancelled and returned
ORDER_STATUSES: tuple[tuple[str, float], ...] = (
    ("delivered", 0.46),
    ("shipped", 0.22),
    ("processing", 0.07),
    ("pending", 0.05),
    ("cancelled", 0.10),
    ("returned", 0.10),
)
PARTIAL_RETURN_SHARE = 0.04  # items of delivered orders the customer sent back alone
ITEMS_PER_ORDER = (1, 2, 3, 4)
ITEMS_WEIGHTS = (0.40, 0.30, 0.20, 0.10)  # 2.0 items per order on average
DISCOUNTS = ((1.0, 0.60), (0.9, 0.20), (0.8, 0.15), (0.7, 0.05))  # (factor of retail price, share)

_HOUR, _DAY = 3600, 86400
_TIMESTAMP = "%Y-%m-%dT%H:%M:%SZ"

Files = dict[str, bytes]


def key(table: str, name: str) -> str:
    """The landing key of a set's file: ``landing/<table>/<name>.csv``."""
    return f"{landing_prefix(table)}{name}.csv"


def _columns(table: str) -> list[str]:
    return [c.name for c in load_contract("filedrop").columns(table)]


def _csv(table: arrow.Table) -> bytes:
    buffer = io.BytesIO()
    # no name or value the generator writes holds a comma, quote or line break: plain, unquoted
    # CSV (Arrow would quote the header)
    buffer.write((",".join(table.column_names) + "\n").encode())
    arrow_csv.write_csv(table, buffer, arrow_csv.WriteOptions(include_header=False, quoting_style="none"))
    return buffer.getvalue()


def _ids(prefix: str, numbers: np.ndarray, width: int) -> arrow.Array:
    padded = pc.utf8_lpad(pc.cast(arrow.array(numbers), arrow.string()), width=width, padding="0")
    return pc.binary_join_element_wise(prefix, padded, "")


def _timestamps(seconds: np.ndarray, present: np.ndarray) -> arrow.Array:
    """ISO 8601 in UTC (``2026-11-01T10:00:00Z``); Arrow's cast of a zoneless timestamp to text
    is ~20x faster than ``strftime`` (a million values in 0.15 s)."""
    text = arrow.array(seconds.astype("datetime64[s]"), mask=~present).cast(arrow.string())
    return pc.binary_join_element_wise(pc.replace_substring(text, " ", "T", max_replacements=1), "Z", "")


def _money(values: np.ndarray) -> arrow.Array:
    return arrow.array(np.round(values, 2)).cast(arrow.string())


def _product_cost_factor(product_id: str) -> float:
    # seed-independent, so every set describes a product the same way
    digest = hashlib.sha256(product_id.encode()).digest()
    return 0.35 + 0.25 * digest[0] / 255


def products_file() -> arrow.Table:
    """The catalogue as the shop's products file (every column a string, the contract's order)."""
    catalogue = products_table()
    ids = catalogue["product_id"].to_pylist()
    retail = catalogue["retail_price"].cast(arrow.float64()).to_numpy()
    cost = np.array([_product_cost_factor(i) for i in ids]) * retail
    brands = catalogue["brand"].to_pylist()
    sku = [
        f"{b[:3].upper()}-{i[1:]}-{hashlib.sha256(i.encode()).hexdigest()[:6].upper()}"
        for i, b in zip(ids, brands, strict=True)
    ]
    columns = {
        "id": catalogue["product_id"],
        "sku": arrow.array(sku),
        "cost": _money(cost),
        "category": catalogue["category"],
        "name": catalogue["product_name"],
        "brand": catalogue["brand"],
        "retail_price": _money(retail),
        "department": catalogue["department"],
    }
    return arrow.table({c: columns[c] for c in _columns("products")})


def _item_counts(rng: np.random.Generator, orders: int | None, items: int | None) -> np.ndarray:
    if items is None:
        return rng.choice(ITEMS_PER_ORDER, size=orders or 0, p=ITEMS_WEIGHTS)
    mean = float(np.dot(ITEMS_PER_ORDER, ITEMS_WEIGHTS))
    counts = rng.choice(ITEMS_PER_ORDER, size=int(items / mean) + 16, p=ITEMS_WEIGHTS)
    while counts.sum() < items:  # rarely: the draw came out short
        counts = np.concatenate([counts, rng.choice(ITEMS_PER_ORDER, size=16, p=ITEMS_WEIGHTS)])
    total = np.cumsum(counts)
    n = int(np.searchsorted(total, items)) + 1  # the first order reaching the wanted item count
    counts = counts[:n].copy()
    counts[-1] -= int(total[n - 1]) - items
    return counts


def _distinct_products(rng: np.random.Generator, counts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per order, ``count`` distinct product positions (popular products more often)."""
    n, width = len(counts), max(ITEMS_PER_ORDER)
    picks = rng.choice(len(weights), size=(n, width), p=weights)
    used = np.arange(width)[None, :] < counts[:, None]
    while True:  # redraw an order's repeated product until each order's products differ
        ordered = np.sort(np.where(used, picks, -1 - np.arange(width)[None, :]), axis=1)
        repeated = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
        if not repeated.any():
            break
        rows = np.flatnonzero(repeated)
        picks[rows] = rng.choice(len(weights), size=(len(rows), width), p=weights)
    return picks[used]


def generate_set(
    seed: int = 7,
    orders: int = 3000,
    start: date = DEFAULT_START,
    days: int = 3,
    name: str = "drop",
    *,
    items: int | None = None,
    tables: Iterable[str] = TABLES,
) -> Files:
    """A valid set ``{landing key: CSV bytes}``; the same arguments give the same bytes.

    ``items``: generate this many order items exactly (as many orders as that takes, ~2 items
    each) instead of ``orders`` orders. ``tables``: which files to write, e.g.
    ``("orders", "order_items")`` for a set without products (they are already known) or
    ``("order_items",)`` for items of orders an earlier set of the same seed delivered.
    """
    wanted = tuple(tables)
    unknown = [t for t in wanted if t not in TABLES]
    if unknown or not wanted:
        raise ValueError(f"tables must be some of {TABLES}, got {wanted}")
    if days < 1:
        raise ValueError("days must be at least 1")
    rng = np.random.default_rng(seed)
    counts = _item_counts(rng, orders, items)
    n = len(counts)

    catalogue = products_file()
    product_ids = np.array(catalogue["id"].to_pylist())
    retail = catalogue["retail_price"].cast(arrow.float64()).to_numpy()
    popularity = 1.0 / (rng.permutation(len(product_ids)) + 8.0)  # a long tail of rarely bought products
    popularity /= popularity.sum()

    # orders
    order_numbers = np.arange(1, n + 1)
    order_ids = _ids(f"O{seed}-", order_numbers, 7)
    users = rng.integers(1, max(2, int(n * 0.7)) + 1, size=n)  # returning customers
    statuses = np.array([s for s, _ in ORDER_STATUSES])
    status = statuses[rng.choice(len(statuses), size=n, p=[p for _, p in ORDER_STATUSES])]
    first = int(datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp())
    created = first + rng.integers(0, days * _DAY, size=n)
    shipped = created + rng.integers(2 * _HOUR, 72 * _HOUR, size=n)
    delivered = shipped + rng.integers(1 * _DAY, 5 * _DAY, size=n)
    returned = delivered + rng.integers(1 * _DAY, 14 * _DAY, size=n)
    has_shipped = np.isin(status, ["shipped", "delivered", "returned"])
    has_delivered = np.isin(status, ["delivered", "returned"])
    has_returned = status == "returned"

    # order items: the order's status and times, a few items of delivered orders returned alone
    owner = np.repeat(np.arange(n), counts)
    position = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts) + 1
    product = _distinct_products(rng, counts, popularity)
    item_status = status[owner].copy()
    partial = (item_status == "delivered") & (rng.random(len(owner)) < PARTIAL_RETURN_SHARE)
    item_status[partial] = "returned"
    item_returned = np.where(
        partial, delivered[owner] + rng.integers(1 * _DAY, 14 * _DAY, size=len(owner)), returned[owner]
    )
    discount = np.array([d for d, _ in DISCOUNTS])[
        rng.choice(len(DISCOUNTS), size=len(owner), p=[p for _, p in DISCOUNTS])
    ]
    owner_ids = order_ids.take(arrow.array(owner))

    files: Files = {}
    user_ids = _ids("U", users, 6)
    if "orders" in wanted:
        table = arrow.table(
            {
                "order_id": order_ids,
                "user_id": user_ids,
                "status": arrow.array(status),
                "created_at": _timestamps(created, np.ones(n, dtype=bool)),
                "returned_at": _timestamps(returned, has_returned),
                "shipped_at": _timestamps(shipped, has_shipped),
                "delivered_at": _timestamps(delivered, has_delivered),
                "num_of_item": arrow.array(counts).cast(arrow.string()),
            }
        )
        files[key("orders", name)] = _csv(table.select(_columns("orders")))
    if "order_items" in wanted:
        table = arrow.table(
            {
                "id": pc.binary_join_element_wise(owner_ids, pc.cast(arrow.array(position), arrow.string()), "-"),
                "order_id": owner_ids,
                "user_id": user_ids.take(arrow.array(owner)),
                "product_id": arrow.array(product_ids[product]),
                "status": arrow.array(item_status),
                "created_at": _timestamps(created[owner], np.ones(len(owner), dtype=bool)),
                "shipped_at": _timestamps(shipped[owner], has_shipped[owner]),
                "delivered_at": _timestamps(delivered[owner], has_delivered[owner]),
                "returned_at": _timestamps(item_returned, has_returned[owner] | partial),
                "sale_price": _money(retail[product] * discount),
            }
        )
        files[key("order_items", name)] = _csv(table.select(_columns("order_items")))
    if "products" in wanted:
        files[key("products", name)] = _csv(catalogue)
    return files


def late_items(
    seed: int = 7,
    orders: int = 3000,
    start: date = DEFAULT_START,
    days: int = 3,
    name: str = "late",
    *,
    day: int = 0,
    share: float = 0.5,
) -> Files:
    """A late order-items file for orders an earlier ``generate_set(seed, orders, start, days)``
    delivered: of the items of orders created on ``start + day``, ``share`` of the delivered ones
    come back as returned (three days after delivery). Only that date's KPIs change."""
    base = generate_set(seed, orders, start, days, tables=("order_items",))
    items = _read(next(iter(base.values())))
    created = pc.strptime(items["created_at"], format=_TIMESTAMP, unit="s")
    on_day = pc.equal(pc.cast(created, arrow.date32()), arrow.scalar(start + timedelta(days=day)))
    rng = np.random.default_rng([seed, day])
    chosen = pc.and_(
        pc.and_(on_day, pc.equal(items["status"], "delivered")), arrow.array(rng.random(len(items)) < share)
    )
    chosen_rows = items.filter(chosen)
    delivered = pc.strptime(chosen_rows["delivered_at"], format=_TIMESTAMP, unit="s")
    returned = pc.strftime(pc.add(delivered, arrow.scalar(3 * _DAY, arrow.duration("s"))), format=_TIMESTAMP)
    late = chosen_rows.set_column(
        chosen_rows.schema.get_field_index("status"), "status", arrow.array(["returned"] * len(chosen_rows))
    ).set_column(chosen_rows.schema.get_field_index("returned_at"), "returned_at", returned)
    return {key("order_items", name): _csv(late)}


# ---------------------------------------------------------------------------- faults


def _read(data: bytes) -> arrow.Table:
    """A generated CSV as strings (the generator's own files: plain UTF-8 CSV)."""
    header = next(csv.reader([data.split(b"\n", 1)[0].decode()]))
    return arrow_csv.read_csv(
        io.BytesIO(data), convert_options=arrow_csv.ConvertOptions(column_types=dict.fromkeys(header, arrow.string()))
    )


def _rows(data: bytes) -> tuple[list[str], list[list[str]]]:
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"))))
    return rows[0], rows[1:]


def _write(header: list[str], rows: Iterable[list[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def _file(files: Mapping[str, bytes], table: str) -> str:
    for k in files:
        if table_of(k) == table:
            return k
    raise ValueError(f"this fault needs a file of {table} in the set; it has {sorted(files)}")


Fault = Callable[[Files], Files]


def _edit(table: str, change: Callable[[list[str], list[list[str]]], list[list[str]]]) -> Fault:
    """A fault that rewrites the rows of the set's ``table`` file."""

    def fault(files: Files) -> Files:
        out = dict(files)
        name = _file(out, table)
        header, rows = _rows(out[name])
        out[name] = _write(header, change(header, [list(r) for r in rows]))
        return out

    return fault


def _set_cell(table: str, column: str, value: str, row: int = 0) -> Fault:
    def change(header: list[str], rows: list[list[str]]) -> list[list[str]]:
        rows[row][header.index(column)] = value
        return rows

    return _edit(table, change)


def _blank_key(table: str, column: str, referencing: tuple[str, str]) -> Fault:
    """Blank the key of the first row and drop the rows of ``referencing`` (table, column) that
    pointed at it, so the set breaks only the key's rule (no dangling reference)."""

    def fault(files: Files) -> Files:
        out = dict(files)
        name = _file(out, table)
        header, rows = _rows(out[name])
        i = header.index(column)
        old, rows[0][i] = rows[0][i], ""
        out[name] = _write(header, rows)
        ref_table, ref_column = referencing
        ref_name = _file(out, ref_table)
        ref_header, ref_rows = _rows(out[ref_name])
        j = ref_header.index(ref_column)
        out[ref_name] = _write(ref_header, [r for r in ref_rows if r[j] != old])
        return out

    return fault


def _duplicate_row(table: str, change: str, value: str | None = None) -> Fault:
    """Append a copy of the first row with ``change`` set to ``value`` (or the second row's)."""

    def edit(header: list[str], rows: list[list[str]]) -> list[list[str]]:
        copy = list(rows[0])
        copy[header.index(change)] = value if value is not None else rows[1][header.index(change)]
        return [*rows, copy]

    return _edit(table, edit)


def _replace_file(table: str, content: Callable[[bytes], bytes]) -> Fault:
    def fault(files: Files) -> Files:
        out = dict(files)
        name = _file(out, table)
        out[name] = content(out[name])
        return out

    return fault


def _drop_column(table: str, column: str) -> Fault:
    def fault(files: Files) -> Files:
        out = dict(files)
        name = _file(out, table)
        header, rows = _rows(out[name])
        i = header.index(column)
        out[name] = _write(header[:i] + header[i + 1 :], (r[:i] + r[i + 1 :] for r in rows))
        return out

    return fault


def _add_column(table: str, column: str, value: str) -> Fault:
    def fault(files: Files) -> Files:
        out = dict(files)
        name = _file(out, table)
        header, rows = _rows(out[name])
        out[name] = _write([*header, column], ([*r, value] for r in rows))
        return out

    return fault


def _duplicate_column(table: str, column: str) -> Fault:
    def fault(files: Files) -> Files:
        out = dict(files)
        name = _file(out, table)
        header, rows = _rows(out[name])
        i = header.index(column)
        out[name] = _write([*header, column], ([*r, r[i]] for r in rows))
        return out

    return fault


def _unknown_file(files: Files) -> Files:
    name = _file(files, "orders").rsplit("/", 1)[-1]
    return {**files, f"landing/customers/{name}": b"customer_id,name\nC1,Ada\n"}


def _latin1(data: bytes) -> bytes:
    # a spreadsheet saved as Latin-1 (Windows-1252): an accented brand is one byte, not UTF-8
    header, rows = _rows(data)
    rows[0][header.index("brand")] = "Crème"
    return _write(header, rows).decode("utf-8").encode("latin-1")


def _semicolons(data: bytes) -> bytes:
    header, rows = _rows(data)
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def _gzipped(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)  # a compressed export named .csv: binary, not a CSV


def oversize(limit: int) -> Fault:
    """A fault making the orders file larger than ``limit`` bytes (blank lines appended: still a
    valid CSV, refused only for its size)."""

    def pad(data: bytes) -> bytes:
        return data + b"\n" * max(0, limit + 1 - len(data))

    return _replace_file("orders", pad)


def _dangling(column: str, value: str) -> Fault:
    return _set_cell("order_items", column, value)


def _header_only(data: bytes) -> bytes:
    return data.split(b"\n", 1)[0] + b"\n"


FAULTS: dict[str, Fault] = {
    # whole-file rules
    "unknown file": _unknown_file,
    "size limit": oversize(SIZE_LIMIT_FAULT_BYTES),
    "empty file": _replace_file("orders", lambda _: b""),
    "encoding": _replace_file("products", _latin1),
    "not a csv": _replace_file("order_items", _gzipped),
    "delimiter": _replace_file("orders", _semicolons),
    "header only": _replace_file("order_items", _header_only),
    "missing columns": _drop_column("orders", "num_of_item"),
    "unexpected columns": _add_column("orders", "gender", "F"),
    "duplicated columns": _duplicate_column("order_items", "status"),
    # required fields
    "orders.order_id: required": _blank_key("orders", "order_id", ("order_items", "order_id")),
    "orders.user_id: required": _set_cell("orders", "user_id", ""),
    "orders.status: required": _set_cell("orders", "status", ""),
    "orders.created_at: required": _set_cell("orders", "created_at", ""),
    "order_items.id: required": _set_cell("order_items", "id", ""),
    "order_items.order_id: required": _set_cell("order_items", "order_id", ""),
    "order_items.user_id: required": _set_cell("order_items", "user_id", ""),
    "order_items.product_id: required": _set_cell("order_items", "product_id", ""),
    "order_items.status: required": _set_cell("order_items", "status", ""),
    "products.id: required": _blank_key("products", "id", ("order_items", "product_id")),
    "products.sku: required": _set_cell("products", "sku", ""),
    "products.name: required": _set_cell("products", "name", ""),
    "products.brand: required": _set_cell("products", "brand", ""),
    # unique keys
    "orders.order_id: unique": _duplicate_row("orders", "user_id"),
    "order_items.(order_id, product_id): unique": _duplicate_row("order_items", "id", "duplicate-item"),
    "products.id: unique": _duplicate_row("products", "sku", "SKU-DUPLICATE"),
    # allowed values, ranges, patterns
    "orders.status: enum": _set_cell("orders", "status", "lost"),
    "order_items.status: enum": _set_cell("order_items", "status", "refunded"),
    "products.category: enum": _set_cell("products", "category", "garden"),
    "products.department: enum": _set_cell("products", "department", "hardware"),
    "order_items.sale_price: minimum 0": _set_cell("order_items", "sale_price", "-12.5"),
    "products.cost: minimum 0": _set_cell("products", "cost", "-3.2"),
    "products.id: pattern": _duplicate_row("products", "id", "PX-1"),
    "products.retail_price: minimum 0": _set_cell("products", "retail_price", "-10"),
    "orders.user_id: length": _set_cell("orders", "user_id", "U" * 65),
    # types
    "orders.num_of_item: integer": _set_cell("orders", "num_of_item", "2.5"),
    "order_items.sale_price: number": _set_cell("order_items", "sale_price", "twelve"),
    "orders.created_at: timestamp": _set_cell("orders", "created_at", "yesterday"),
    # references
    "order_items.order_id -> orders.order_id": _dangling("order_id", "O-NOT-IN-THE-SET"),
    "order_items.product_id -> products.id": _dangling("product_id", "P9999"),
}
