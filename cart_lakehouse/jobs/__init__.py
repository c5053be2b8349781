"""The lakehouse's data jobs as plain functions (Spark, pyarrow), with no Dagster in them."""
