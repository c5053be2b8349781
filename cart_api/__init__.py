"""The ingest service: FastAPI ``POST /purchases`` -> SNS -> SQS (+DLQ) -> worker -> DynamoDB."""
