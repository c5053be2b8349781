"""The shared base of the ingest service and the lakehouse: settings, AWS clients, metrics, the
declarative resource description and idempotent provisioning. It imports neither of them."""
