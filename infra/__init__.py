"""Infrastructure shared by the ingest service and the lakehouse: settings, AWS clients, the
declarative resource description, idempotent provisioning and the local AWS (moto server)."""
