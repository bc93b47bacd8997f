"""bench/e2e.py ``targets``: issue 14's "Must show" figures of one run, with a capped latency phase flagged."""

from __future__ import annotations

from typing import Any

from bench.e2e import targets


def _result(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"throughput_rps": 3500.0, "ratio": 0.35, "worker_cpu_ms_per_doc": 0.25,
                            "kafka_records_per_doc": 4.5, "latency_ms": {"p99": 800.0}, "offered_rps": 1000.0,
                            "peak_rss_mb": 300.0}
    return {**base, **over}


def test_every_target_met() -> None:
    assert {t["figure"]: t["met"] for t in targets(_result())} == {
        "throughput_rps": True, "ratio (to the pass-through)": True, "worker_cpu_ms_per_doc": True,
        "kafka_records_per_doc": True, "latency p99 ms": True, "peak_rss_mb (this run; see bench state)": True}


def test_a_p99_below_one_second_at_a_capped_rate_is_not_the_target() -> None:
    lat = {t["figure"]: t for t in targets(_result(offered_rps=450.0))}["latency p99 ms"]
    assert lat["met"] is False
    assert "450.0/s offered" in lat["note"]


def test_each_figure_can_miss() -> None:
    missed = targets(_result(throughput_rps=2999.0, ratio=0.29, worker_cpu_ms_per_doc=0.31, kafka_records_per_doc=5.1,
                             latency_ms={"p99": 1000.0}, peak_rss_mb=512.0))
    assert [t["met"] for t in missed] == [False] * 6
