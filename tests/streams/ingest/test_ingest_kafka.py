"""Ingest against the real broker: bad input -> dlq (original bytes + reason), good -> reports.

Runs ``gridhub run --only ingest`` as a subprocess (tests/conftest.py ``worker``).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any, Callable

import pytest
from helpers.ingest_corpus import load_bad_inputs

from gridhub.core.codec import codec
from gridhub.core.dlq import parse_dead_letter_headers
from gridhub.core.settings import Settings
from gridhub.core.topics import DEVICE_EVENTS, DLQ, RAW, REGISTRY_DEVICES, REPORTS
from gridhub.simulate.generator import sample
from streams.ingest.normalize import normalize

pytestmark = pytest.mark.integration


def test_bad_inputs_dead_lettered_good_ones_reported(settings: Settings, worker: Callable[..., Any],
                                                     kafka_producer: Any, consume: Callable[..., list[Any]]) -> None:
    now = int(time.time() * 1000)
    records, registry = sample(400, seed=7, end_ms=now)
    # The registry first: many simulated sensor documents carry no location of their own.
    for device_id, record in registry.items():
        kafka_producer.send(settings.topic(REGISTRY_DEVICES), key=device_id.encode(),
                            value=json.dumps(record, ensure_ascii=False).encode())
    kafka_producer.flush()
    worker(settings, only="ingest")

    bad = [b for b in load_bad_inputs(now) if b.kafka]
    good = [(r.source, r.key.encode(), r.value()) for r in records]
    # The oracle: the pure normaliser on the same documents (the worker must reproduce it over Kafka).
    expected_reports = Counter()
    for source, key, value in good:
        out = normalize(source, value, registry=registry, received_at_ms=now, pii_key=b"oracle")
        if out.report is not None:
            expected_reports[key] += 1
    assert sum(expected_reports.values()) >= 100, "the sample must hold enough reports to mean something"
    # Interleave: a bad document after every third good one, on the same partitions' stream.
    queue: list[tuple[str, bytes, bytes]] = []
    bad_iter = iter(bad)
    for i, item in enumerate(good):
        queue.append(item)
        if i % 3 == 2:
            nxt = next(bad_iter, None)
            if nxt is not None:
                queue.append((nxt.source, nxt.name.encode(), nxt.value))
    for nxt in bad_iter:
        queue.append((nxt.source, nxt.name.encode(), nxt.value))
    for source, key, value in queue:
        kafka_producer.send(settings.topic(RAW[source]), key=key, value=value)
    kafka_producer.flush()

    dead = consume(DLQ, len(bad), timeout=90)
    by_key = {r.key.decode(): r for r in dead}
    assert len(dead) == len(bad), sorted(set(b.name for b in bad) - set(by_key))
    for b in bad:
        record = by_key[b.name]
        assert record.value == b.value, f"{b.name}: dlq must hold the original bytes"
        info = parse_dead_letter_headers(record.headers)
        assert info.stage == "normalize"
        assert b.reason in info.reason, (b.name, info.reason)
        assert info.topic == settings.topic(RAW[b.source])
        assert info.partition is not None and info.offset is not None and info.offset >= 0

    total = sum(expected_reports.values())
    reports = consume(REPORTS, total, timeout=90)
    decoded = [codec("Report").decode(r.value) for r in reports]
    got = Counter(r["source_ref"].split("@")[0] if r["source"] == "sensors" else r["source_ref"] for r in decoded)
    want = Counter({k.decode(): n for k, n in expected_reports.items()})
    assert got == want
    for record, report in zip(reports, decoded):
        assert record.key.decode() == report["county_code"]  # keyed by county for fusion
        assert len(report["county_code"]) == 6 and report["category"]
        assert report["reporter_hash"] is None or len(report["reporter_hash"]) == 64
    # No phone number survives into the reports topic.
    for (source, _key, value) in good:
        phone = json.loads(value).get("phone") or (json.loads(value).get("reporter") or {}).get("phone")
        if phone:
            assert not any(phone.encode() in r.value for r in reports)

    maintenance = sum(1 for s, _k, v in good if s == "sensors"
                      and json.loads(v)["eventType"] in ("fault", "low_battery", "selftest"))
    events = [codec("DeviceEvent").decode(r.value) for r in consume(DEVICE_EVENTS, maintenance, timeout=30)]
    assert sum(1 for e in events if e["event_type"] != "offline") == maintenance


def test_silent_device_reported_offline_once(settings: Settings, worker: Callable[..., Any], kafka_producer: Any,
                                             consume: Callable[..., list[Any]]) -> None:
    record = {"deviceId": "HB-SHORT-1", "deviceType": "smoke", "streetCode": "330502001",
              "address": "月河街道人民路3号", "lng": 120.09, "lat": 30.89, "owner": "某物业",
              "ownerPhone": "13700000000", "heartbeatSeconds": 2}
    kafka_producer.send(settings.topic(REGISTRY_DEVICES), key=b"HB-SHORT-1", value=json.dumps(record).encode())
    kafka_producer.flush()
    worker(settings, only="ingest")
    at = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    heartbeat = {"deviceId": "HB-SHORT-1", "deviceType": "smoke", "eventType": "heartbeat", "eventTime": at}
    kafka_producer.send(settings.topic(RAW["sensors"]), key=b"HB-SHORT-1", value=json.dumps(heartbeat).encode())
    kafka_producer.flush()
    # 2 s x 2.5 = 5 s of silence, found by a scan every 15 s: one event within ~20 s; wait for more.
    events = consume(DEVICE_EVENTS, 0, timeout=45)
    offline = [codec("DeviceEvent").decode(r.value) for r in events]
    assert [(e["device_id"], e["event_type"], e["street_code"]) for e in offline] == [
        ("HB-SHORT-1", "offline", "330502001")]
    assert not consume(REPORTS, 0, timeout=1)  # heartbeats never reach the case stream


def test_offline_detection_survives_a_crash(settings: Settings, worker: Callable[..., Any], kafka_producer: Any,
                                            consume: Callable[..., list[Any]]) -> None:
    """Issue 14 heartbeat fast path: last-seen lives in memory, the table is its copy for a restart.

    A device the table does not know yet is written with the heartbeat's batch, so a worker killed
    right after the heartbeat was committed still reports the device offline after its restart,
    with the episode id of the last-seen time the crashed worker saw."""
    from streams.ingest.agents import offline_event

    record = {"deviceId": "HB-CRASH-1", "deviceType": "smoke", "streetCode": "330502001",
              "heartbeatSeconds": 8}  # offline after 2.5 x 8 = 20 s of silence
    kafka_producer.send(settings.topic(REGISTRY_DEVICES), key=b"HB-CRASH-1", value=json.dumps(record).encode())
    kafka_producer.flush()
    w = worker(settings, only="ingest")
    at_s = int(time.time())
    heartbeat = {"deviceId": "HB-CRASH-1", "deviceType": "smoke", "eventType": "heartbeat",
                 "eventTime": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(at_s))}
    kafka_producer.send(settings.topic(RAW["sensors"]), key=b"HB-CRASH-1", value=json.dumps(heartbeat).encode())
    kafka_producer.flush()
    from gridhub.core.kafka_admin import admin_client

    admin = admin_client(settings, client_id="test-liveness")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the heartbeat's batch is committed (so its liveness write is done)
            offsets = admin.list_group_offsets({settings.faust_app_id: None})[settings.faust_app_id]
            if sum(m.offset for tp, m in offsets.items() if tp.topic == settings.topic(RAW["sensors"])) == 1:
                break
            time.sleep(0.5)
    finally:
        admin.close()
    assert not consume(DEVICE_EVENTS, 0, timeout=1)  # not reported yet (silent for less than 20 s)
    w.restart(kill=True)  # SIGKILL: the in-memory last-seen is gone, the table's copy is all there is
    events = [codec("DeviceEvent").decode(r.value) for r in consume(DEVICE_EVENTS, 1, timeout=60)]
    expected = offline_event("HB-CRASH-1", record, at_s * 1000, 0)["event_id"]
    assert [(e["device_id"], e["event_type"], e["event_id"]) for e in events] == [
        ("HB-CRASH-1", "offline", expected)]
