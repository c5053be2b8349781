"""Sensors of the lakehouse: alerts on failures (and, in ``dlq.py``, the DLQ's redrive and reruns)."""
