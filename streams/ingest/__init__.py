"""Ingest: raw source documents -> canonical Avro records (``reports``, ``device-events``).

``normalize`` (pure) does the work; ``agents`` wires it to Kafka. Importing the
package registers the agents on :data:`streams.app.app` (``gridhub run`` loads
it through ``gridhub.runner.DOMAINS``).
"""

from streams.ingest import agents as agents  # noqa: E402,F401  (registers the agents on the app)
