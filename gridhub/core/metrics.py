"""Prometheus metrics of every long-running gridhub process.

Defined once here so that every domain increments the same series; each
process exposes them on its health/metrics endpoint (the Faust worker's web
server serves ``/metrics``; see docs/operators.md).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DOCUMENTS_IN = Counter("gridhub_documents_in_total", "Raw documents consumed", ["source"])
REPORTS_OUT = Counter("gridhub_reports_out_total", "Canonical reports produced", ["source"])
DEAD_LETTERS = Counter("gridhub_dead_letters_total", "Records sent to the dead-letter topic", ["stage"])
REPORTS_FUSED = Counter("gridhub_reports_fused_total", "Reports linked to a case", ["outcome"])  # new_case|joined|updated
OPEN_CASES = Gauge("gridhub_open_cases", "Open cases held in fusion state (this worker)")
OVERDUE_CASES = Gauge("gridhub_overdue_cases", "Cases past a deadline (this worker)")
DISPATCHES = Counter("gridhub_dispatches_total", "Dispatches produced", ["agency"])
CONSUMER_LAG = Gauge("gridhub_consumer_lag", "Records behind the log end", ["topic", "partition"])
SINK_BATCH_SECONDS = Histogram("gridhub_sink_batch_seconds", "ClickHouse sink batch insert latency", ["table"])
SINK_ROWS = Counter("gridhub_sink_rows_total", "Rows inserted into ClickHouse", ["table"])
WEBHOOK_DELIVERIES = Counter("gridhub_webhook_deliveries_total", "Webhook delivery attempts", ["agency", "outcome"])
