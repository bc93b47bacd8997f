"""Ingest: raw source documents -> canonical Avro records (``reports``, ``device-events``).

``normalize`` (pure) does the work; ``agents`` wires it to Kafka. The package imports nothing:
``gridhub run`` imports ``agents``, which registers the agents on
:data:`streams.app.app` (``gridhub.runner.DOMAINS``).
"""
