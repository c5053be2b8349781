"""Quarantine of the ingest path: dead-lettered messages that break the purchases contract.

Written by the DLQ sensor (not by a run), which reports each write as a materialization of
this external asset, so what was quarantined and why is visible in the asset graph.
"""

from dagster import AssetSpec

dlq_quarantine = AssetSpec(
    key=["quarantine", "dlq_purchases"],
    group_name="quarantine",
    description=(
        "Messages from the purchases DLQ that break the contract and can never be stored, as JSON lines "
        "under quarantine/dlq/day=YYYY-MM-DD/<batch>.jsonl with the reason, the message id and the body."
    ),
    deps=[["dynamodb", "purchases"]],
    owners=["team:cart-platform"],
    kinds={"json"},
)
