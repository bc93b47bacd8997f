"""Readiness and Faust's stream lag, the pure parts of gridhub/health.py (no Kafka)."""

from __future__ import annotations

from collections import namedtuple

from streams.health import ready_status, stream_lag

TP = namedtuple("TP", "topic partition")


def test_ready_only_when_healthy_settled_and_holding_partitions() -> None:
    assert ready_status("ok", rebalancing=False, assigned=4) == "ok"
    assert ready_status("stalled", rebalancing=True, assigned=4) == "stalled"  # liveness reasons win
    assert ready_status("ok", rebalancing=True, assigned=4) == "rebalancing"
    assert ready_status("ok", rebalancing=False, assigned=0) == "no partitions assigned"
    assert ready_status("ok", rebalancing=False, assigned=None) == "no partitions assigned"


def test_stream_lag_is_the_high_watermark_minus_the_next_offset_to_read() -> None:
    read = {TP("reports", 0): 99, TP("reports", 1): 9}
    ends = {TP("reports", 0): 100, TP("reports", 1): 30, TP("cases", 0): 7}
    # offset 99 read, high watermark 100: nothing left; 9 read of 30: 20 left; cases never read: unknown.
    assert stream_lag(read, ends) == {("reports", 0): 0, ("reports", 1): 20}
