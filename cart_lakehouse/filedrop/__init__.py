"""The file drop: orders, order items and products CSV files landing in the lake bucket, grouped
into complete sets, validated against ``contracts/filedrop.odcs.yaml``, and turned into the daily
KPI tables of ``contracts/kpis.odcs.yaml`` (Delta Lake in the lake, and DynamoDB)."""
