"""Worker /metrics and /healthz, and the consumer-lag probe, against real infrastructure."""

from __future__ import annotations

import json
import urllib.request
from typing import Any, Callable

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from streams.health import LagProbe, compute_lag
from gridhub.core.kafka_admin import ensure_topics
from gridhub.core.settings import Settings
from helpers.kafka import produce


def test_compute_lag_counts_from_the_committed_offset() -> None:
    lag = compute_lag({("a", 0): 3, ("a", 1): None}, {("a", 0): 10, ("a", 1): 4, ("a", 2): 0})
    assert lag == {("a", 0): 7, ("a", 1): 4, ("a", 2): 0}


@pytest.mark.integration
def test_lag_probe_reads_the_groups_committed_offsets(settings: Settings) -> None:
    ensure_topics(settings, ["reports"])
    topic = settings.topic("reports")
    produce(settings, "reports", [{"key": b"k", "value": b"v", "partition": 0}] * 10
            + [{"key": b"k", "value": b"v", "partition": 1}] * 4)
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=settings.faust_app_id,
                             enable_auto_commit=False)
    try:
        consumer.assign([TopicPartition(topic, 0)])
        consumer.commit({TopicPartition(topic, 0): OffsetAndMetadata(3, "", -1)})
    finally:
        consumer.close()
    probe = LagProbe(settings)
    try:
        assert probe.measure([(topic, 0), (topic, 1), (topic, 2)]) == {(topic, 0): 7, (topic, 1): 4, (topic, 2): 0}
        assert probe.measure() == {(topic, 0): 7}   # default: what the group committed
    finally:
        probe.close()


@pytest.mark.integration
def test_worker_serves_metrics_and_healthz(settings: Settings, worker: Callable[..., Any]) -> None:
    w = worker(settings, only="no-such-domain")   # the bare worker: web server, timers, no agents
    base = f"http://127.0.0.1:{w.web_port}"
    with urllib.request.urlopen(base + "/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    for name in ("gridhub_consumer_lag", "gridhub_documents_in_total", "gridhub_sink_batch_seconds"):
        assert f"# TYPE {name.removesuffix('_total')}" in text
    with urllib.request.urlopen(base + "/healthz", timeout=10) as response:
        body = json.loads(response.read())
    assert response.status == 200 and body["status"] == "ok" and body["app_id"] == settings.faust_app_id
    assert body["rebalancing"] is False and body["rebalancing_seconds"] is None  # the stall watch's view


@pytest.mark.integration
@pytest.mark.slow
def test_worker_exports_consumer_lag_of_its_partitions(settings: Settings, worker: Callable[..., Any]) -> None:
    import re
    import time

    from streams.health import LAG_INTERVAL_S

    ensure_topics(settings)
    w = worker(settings, only="ingest")
    raw = settings.topic("raw.sensors")
    pattern = re.compile(r'^gridhub_consumer_lag\{partition="(\d+)",topic="' + re.escape(raw) + r'"\} (\S+)$', re.M)
    deadline = time.monotonic() + 3 * LAG_INTERVAL_S + 30
    found: list[tuple[str, str]] = []
    while time.monotonic() < deadline and len(found) < settings.partitions:
        time.sleep(2)
        with urllib.request.urlopen(f"http://127.0.0.1:{w.web_port}/metrics", timeout=10) as response:
            found = pattern.findall(response.read().decode())
    # one series per partition of the raw topic this single worker owns, none for changelogs
    assert sorted(int(p) for p, _ in found) == list(range(settings.partitions))
    with urllib.request.urlopen(f"http://127.0.0.1:{w.web_port}/metrics", timeout=10) as response:
        assert "-changelog" not in "".join(line for line in response.read().decode().splitlines()
                                           if line.startswith("gridhub_consumer_lag{"))


def test_a_rebalance_longer_than_the_stall_limit_makes_the_worker_unhealthy() -> None:
    from streams.health import health_status

    def status(since: float | None, now: float = 1_000.0, **flags: bool) -> str:
        return health_status(crashed=flags.get("crashed", False), stopping=flags.get("stopping", False),
                             rebalancing_since=since, now=now, stall_after_s=600.0)

    assert status(None) == "ok"
    assert status(since=500.0) == "ok"            # rebalancing for 500 s: a big table's recovery, say
    assert status(since=399.0) == "stalled"       # 601 s
    assert status(since=399.0, crashed=True) == "crashed"
    assert status(None, stopping=True) == "stopping"


def test_a_partition_waiting_with_nothing_committed_is_stalled() -> None:
    from streams.health import stalled_partitions

    seen: dict[tuple[str, int], tuple[int | None, float]] = {}
    a, b, c = ("cases", 0), ("cases", 1), ("cases", 2)
    assert stalled_partitions(seen, {a: 10, b: 5, c: None}, {a: 3, b: 0, c: 4}, now=0.0, after_s=60) == []
    # a: same offset, records waiting; b: nothing waiting; c: never committed, records waiting
    assert stalled_partitions(seen, {a: 10, b: 5, c: None}, {a: 3, b: 0, c: 4}, now=59.0, after_s=60) == []
    assert stalled_partitions(seen, {a: 10, b: 5, c: None}, {a: 3, b: 0, c: 4}, now=61.0, after_s=60) == [a, c]


def test_progress_or_an_empty_partition_restarts_the_watch() -> None:
    from streams.health import stalled_partitions

    seen: dict[tuple[str, int], tuple[int | None, float]] = {}
    a = ("reports", 3)
    stalled_partitions(seen, {a: 10}, {a: 3}, now=0.0, after_s=60)
    assert stalled_partitions(seen, {a: 12}, {a: 3}, now=50.0, after_s=60) == []  # moved at 50
    assert stalled_partitions(seen, {a: 12}, {a: 3}, now=100.0, after_s=60) == []
    assert stalled_partitions(seen, {a: 12}, {a: 3}, now=111.0, after_s=60) == [a]
    assert stalled_partitions(seen, {a: 15}, {a: 0}, now=112.0, after_s=60) == []  # caught up
    assert stalled_partitions(seen, {}, {}, now=500.0, after_s=60) == [] and seen == {}  # moved away
