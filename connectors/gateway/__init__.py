"""HTTP ingest gateway (``POST /v1/ingest/{source}``, ``POST /v1/feedback``)."""
