"""Where the file drop's files live: the one place their S3 keys and lake paths are spelled.

Landed, archived and quarantined files are objects in the lake bucket (``CART_LAKE_BUCKET``), where
producers drop them and S3 events come from. What the pipeline writes (manifest, bronze, silver,
the Delta KPI tables) lives under the lake root (``CART_LAKE_ROOT``), like the purchases lakehouse.
"""

from __future__ import annotations

from urllib.parse import unquote_plus

TABLES = ("orders", "order_items", "products")  # the contract's schema objects, one landing prefix each
LANDING = "landing"
ARCHIVE = "archive"
QUARANTINE = "quarantine/landing"

MANIFEST = "filedrop/manifest.json"
SETS = "filedrop/sets"
BRONZE = "bronze/filedrop"
SILVER = "silver/filedrop"
KPIS = "kpis"
KPI_TABLES = ("category_kpis", "order_kpis")


def landing_prefix(table: str) -> str:
    return f"{LANDING}/{table}/"


def table_of(key: str) -> str | None:
    """The table a landed object belongs to (``landing/orders/x.csv`` -> ``orders``); None if its
    key is not directly under one of the three landing prefixes."""
    parts = key.split("/")
    if len(parts) == 3 and parts[0] == LANDING and parts[1] in TABLES and parts[2]:
        return parts[1]
    return None


def event_key(raw: str) -> str:
    """An S3 event's object key is URL-encoded (spaces as ``+``)."""
    return unquote_plus(raw)


def file_name(key: str) -> str:
    return key.rsplit("/", 1)[-1]


def archive_key(day: str, set_id: str, key: str) -> str:
    """``archive/<YYYY-MM-DD>/<set>/<table>/<file>``: where a processed file is kept."""
    return f"{ARCHIVE}/{day}/{set_id}/{key.removeprefix(LANDING + '/')}"


def quarantine_key(set_id: str, key: str) -> str:
    """``quarantine/landing/<set>/<table>/<file>``: where a rejected set's files are kept."""
    return f"{QUARANTINE}/{set_id}/{key.removeprefix(LANDING + '/')}"


def quarantine_report_key(set_id: str) -> str:
    return f"{QUARANTINE}/{set_id}/report.json"


def set_record(set_id: str) -> str:
    """Lake path of a set's record: its files and, once run, its outcome."""
    return f"{SETS}/{set_id}.json"


def bronze_dir(table: str, set_id: str) -> str:
    return f"{BRONZE}/{table}/set_id={set_id}"


def silver_dir(table: str, set_id: str) -> str:
    return f"{SILVER}/{table}/set_id={set_id}"


def kpi_table(name: str) -> str:
    return f"{KPIS}/{name}"


def set_outcome(set_id: str) -> str:
    """Lake path of what became of a set (loaded or rejected) and where its files went; written by
    the set's run, while the sensor alone writes the set's record."""
    return f"{SETS}/{set_id}.outcome.json"


def set_redrop(set_id: str) -> str:
    """Lake path of the note that a set is a re-drop: byte for byte the files of the latest set in silver."""
    return f"{SETS}/{set_id}.redrop.json"
