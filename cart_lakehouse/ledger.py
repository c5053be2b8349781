"""The zero-loss ledger: every accepted purchase, every bronze row and every gold total accounted
for, recomputed from DynamoDB and the files in the lake (not from what the runs reported).

- accepted = stored + quarantined: each purchase id the API answered 202 for is in DynamoDB or
  in the DLQ quarantine;
- per hour, DynamoDB = bronze, and bronze = silver + quarantined (+ superseded duplicates);
- per hour, gold ``sales_hourly`` revenue = silver revenue; per day, the daily gold tables'
  revenue = silver revenue of the day.

The demo prints it; the fault-injection tests assert it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cart_aws.aws import AwsClients
from cart_aws.settings import AwsSettings
from cart_lakehouse.checks import hour_dirs
from cart_lakehouse.checks.reconciliation import column_total, count_hour, read_files, revenue_by
from cart_lakehouse.dlq import stored_ids
from cart_lakehouse.lake import Lake
from cart_lakehouse.layout import DLQ_QUARANTINE, GOLD_TABLES, SILVER
from cart_lakehouse.partitions import Hour, whole_days
from cart_lakehouse.sensors.late_data import hour_count


@dataclass(frozen=True)
class Entry:
    """One line of the ledger: ``left`` must equal ``right``."""

    scope: str  # "all", an hour key or a day
    rule: str
    left: str
    right: str
    ok: bool


def quarantined_dlq_records(lake: Lake) -> list[dict[str, object]]:
    """Every record the DLQ triage quarantined in the lake."""
    records: list[dict[str, object]] = []
    for relative in lake.files(DLQ_QUARANTINE):
        records += [json.loads(line) for line in lake.read_bytes(relative).splitlines() if line.strip()]
    return records


def _revenue(lake: Lake, files: Sequence[str], column: str) -> str:
    return str(column_total(read_files(lake, files), column))


def ledger(
    settings: AwsSettings, clients: AwsClients, lake: Lake, hours: Iterable[Hour], accepted_ids: Sequence[str]
) -> list[Entry]:
    hours = sorted(set(hours))
    entries: list[Entry] = []

    accepted = set(accepted_ids)
    stored = stored_ids(clients, settings.purchases_table, sorted(accepted))
    in_quarantine = {str(r["purchase_id"]) for r in quarantined_dlq_records(lake) if r.get("purchase_id")}
    quarantined = (accepted - stored) & in_quarantine
    lost = accepted - stored - quarantined
    entries.append(
        Entry(
            "all",
            "accepted = stored + quarantined",
            f"{len(accepted)} accepted",
            f"{len(stored)} stored + {len(quarantined)} quarantined"
            + (f" ({len(lost)} LOST, e.g. {sorted(lost)[0]})" if lost else ""),
            not lost,
        )
    )

    for hour in hours:
        in_dynamodb = hour_count(clients, settings.purchases_table, settings.ingest_hour_index, hour)
        counts = count_hour(lake, hour)
        entries.append(
            Entry(
                hour.key,
                "DynamoDB = bronze",
                f"{in_dynamodb} in DynamoDB",
                f"{counts.bronze} bronze",
                in_dynamodb == counts.bronze,
            )
        )
        superseded = f" + {counts.superseded} superseded" if counts.superseded else ""
        entries.append(
            Entry(
                hour.key,
                "bronze = silver + quarantined",
                f"{counts.bronze} bronze",
                f"{counts.silver} silver + {counts.quarantined} quarantined{superseded}",
                counts.unaccounted == 0,
            )
        )
        silver = str(revenue_by(lake, SILVER, hour_dirs([hour]), "total_amount"))
        gold = _revenue(lake, GOLD_TABLES["sales_hourly"].files([hour]), "revenue")
        entries.append(
            Entry(hour.key, "gold revenue = silver revenue", f"gold {gold}", f"silver {silver}", gold == silver)
        )

    for day in sorted({h.start.date() for h in hours}):
        day_hours = whole_days([h for h in hours if h.start.date() == day])
        silver = str(revenue_by(lake, SILVER, hour_dirs(day_hours), "total_amount"))
        for model, column in (("sales_by_category_daily", "revenue"), ("buyer_daily", "spend")):
            gold = _revenue(lake, GOLD_TABLES[model].files(day_hours), column)
            entries.append(
                Entry(day.isoformat(), f"{model} = silver revenue", f"gold {gold}", f"silver {silver}", gold == silver)
            )
    return entries


def balanced(entries: Sequence[Entry]) -> bool:
    return all(e.ok for e in entries)


def render(entries: Sequence[Entry]) -> str:
    """The ledger as an aligned text table."""
    rows = [("scope", "rule", "left", "right", "")] + [
        (e.scope, e.rule, e.left, e.right, "ok" if e.ok else "MISMATCH") for e in entries
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
