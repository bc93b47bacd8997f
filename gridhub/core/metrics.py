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

# --- the Faust worker's own sensors (gridhub/health.py: WorkerSensor) -----------------------------
# Prometheus naming: base units (seconds), counters end in _total, the unit in the name.
#: Commit latency buckets: a healthy commit takes milliseconds; seconds mean a slow or lost broker.
_COMMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Rebalance buckets: seconds normally, minutes when a big table recovers from its changelog (docs/scaling.md).
_REBALANCE_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
FAUST_COMMIT_SECONDS = Histogram("gridhub_faust_commit_latency_seconds", "Offset commit latency of the worker",
                                 buckets=_COMMIT_BUCKETS)
FAUST_REBALANCES = Counter("gridhub_faust_rebalances_total", "Consumer group rebalances this worker went through")
FAUST_REBALANCE_SECONDS = Histogram("gridhub_faust_rebalance_duration_seconds",
                                    "Rebalance duration, table recovery included", buckets=_REBALANCE_BUCKETS)
FAUST_REBALANCING = Gauge("gridhub_faust_rebalancing", "1 while the worker is rebalancing or recovering tables")
FAUST_MESSAGES_IN = Counter("gridhub_faust_messages_received_total", "Records the worker's streams read",
                            ["topic"])
FAUST_STREAM_LAG = Gauge("gridhub_faust_stream_lag_records",
                         "Records between the last one read and the partition's high watermark (Faust's view)",
                         ["topic", "partition"])
FAUST_SEND_ERRORS = Counter("gridhub_faust_send_errors_total", "Records the worker's producer failed to send")
FAUST_ASSIGNED_PARTITIONS = Gauge("gridhub_faust_assigned_partitions",
                                  "Partitions of the consumer group assigned to this worker")

# --- the HTTP gateway (connectors/gateway/app.py middleware) ----------------------------------------
#: Request latency buckets: an accepted ingest waits for Kafka's acks=all (milliseconds to a second).
_REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
GATEWAY_REQUESTS = Counter("gridhub_gateway_requests_total", "HTTP requests answered by the gateway",
                           ["route", "method", "status"])
GATEWAY_REQUEST_SECONDS = Histogram("gridhub_gateway_request_duration_seconds", "HTTP request latency of the gateway",
                                    ["route", "method"], buckets=_REQUEST_BUCKETS)
SINK_RETRIES = Counter("gridhub_sink_retries_total",
                       "Sink back-offs, by <stage>.<step> (sink.write: ClickHouse away or too many parts; *.dead_letter: dlq not acknowledged)",
                       ["what"])
