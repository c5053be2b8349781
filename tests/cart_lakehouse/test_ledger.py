"""The zero-loss ledger catches what it is there to catch: a lost purchase, a layer that lags."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from cart_api.settings import Settings
from cart_aws.aws import AwsClients
from cart_dev.seed import put_purchases, stored_purchases
from cart_lakehouse.lake import Lake
from cart_lakehouse.layout import bronze_file
from cart_lakehouse.ledger import balanced, ledger, render
from cart_lakehouse.partitions import Hour

HOUR = Hour(datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3))


def test_an_accepted_purchase_in_neither_dynamodb_nor_quarantine_is_lost(
    settings: Settings, aws: AwsClients, tmp_path: Path
) -> None:
    purchases = stored_purchases(HOUR.start, 3, seed=4)
    put_purchases(aws, settings.purchases_table, purchases[:2])
    entries = ledger(settings, aws, Lake.open(str(tmp_path)), [], [p["purchase_id"] for p in purchases])
    (entry,) = entries
    assert not entry.ok
    assert not balanced(entries)
    assert "2 stored + 0 quarantined (1 LOST" in entry.right
    assert purchases[2]["purchase_id"] in render(entries)


def test_bronze_behind_dynamodb_and_missing_gold_are_mismatches(
    settings: Settings, aws: AwsClients, tmp_path: Path
) -> None:
    purchases = stored_purchases(HOUR.start, 4, seed=5)
    put_purchases(aws, settings.purchases_table, purchases)
    lake = Lake.open(str(tmp_path))
    lake.write_bytes(bronze_file(HOUR), b'{"purchase_id": "only-one"}\n')
    by_rule = {e.rule: e for e in ledger(settings, aws, lake, [HOUR], [p["purchase_id"] for p in purchases])}
    assert by_rule["accepted = stored + quarantined"].ok
    assert not by_rule["DynamoDB = bronze"].ok
    assert by_rule["DynamoDB = bronze"].left == "4 in DynamoDB"
    assert not by_rule["bronze = silver + quarantined"].ok  # the bronze line is in no silver table
    assert by_rule["gold revenue = silver revenue"].ok  # both empty
