"""Replay: dry-run counts, a time range into another namespace, and back into live (real Kafka)."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from gridhub.ops.replay import REPLAY_HEADER
from gridhub.core.kafka_admin import ensure_topics
from gridhub.core.settings import Settings
from helpers.kafka import produce, read_all
from helpers.cli import run_cli

pytestmark = pytest.mark.integration

MIN_MS = 60_000


def _load(settings: Settings) -> tuple[int, dict[str, list[dict]]]:
    """Records before, inside and after the window [now-120m, now-20m)."""
    now = int(time.time() * 1000)
    ensure_topics(settings, ["raw.sensors", "raw.hotline-12345", "raw.four-platforms"])
    data: dict[str, list[dict]] = {"raw.sensors": [], "raw.hotline-12345": []}
    for i in range(60):
        minutes_ago = [180, 100, 60, 30, 10][i % 5]  # 180 and 10 are outside the window
        data["raw.sensors"].append({"key": f"dev-{i % 7}".encode(), "value": f'{{"n": {i}}}'.encode(),
                                    "headers": [("src", b"mqtt")], "timestamp": now - minutes_ago * MIN_MS,
                                    "partition": i % 3})
    for i in range(12):
        data["raw.hotline-12345"].append({"key": f"o{i}".encode(), "value": f"工单{i}".encode(),
                                          "timestamp": now - (50 + i) * MIN_MS, "partition": 5})
    for topic, records in data.items():
        produce(settings, topic, records)
    return now, data


def _in_window(record: dict, now: int) -> bool:
    return now - 120 * MIN_MS <= record["timestamp"] < now - 20 * MIN_MS


def test_dry_run_counts_per_topic_and_partition(settings: Settings) -> None:
    now, data = _load(settings)
    result = run_cli(settings, "replay", "--from", "120m", "--to", "20m", "--dry-run", "--no-progress")
    assert result.exit_code == 0, result.output
    expected = Counter((settings.topic(t), r["partition"]) for t, rs in data.items() for r in rs if _in_window(r, now))
    lines = [line.split() for line in result.output.splitlines()]
    counted = {(cols[0], int(cols[1])): int(cols[2]) for cols in lines
               if len(cols) == 3 and cols[0].startswith(settings.namespace + ".raw.")}
    assert counted == dict(expected)
    assert f"would replay {sum(expected.values())} records" in result.output
    # nothing was produced
    assert len(read_all(settings, settings.topic("raw.sensors"))) == 60


def test_time_range_into_a_namespace_reproduces_the_bytes(settings: Settings, other_settings: Settings) -> None:
    now, data = _load(settings)
    target = other_settings
    result = run_cli(settings, "replay", "--source", "sensors", "--source", "hotline-12345", "--from", "120m",
                     "--to", "20m", "--namespace", target.namespace, "--no-progress")
    assert result.exit_code == 0, result.output
    assert f"GRIDHUB_NAMESPACE={target.namespace} gridhub run" in result.output
    for topic in data:
        source = [row for row in read_all(settings, settings.topic(topic)) if now - 120 * MIN_MS <= row[5] < now - 20 * MIN_MS]
        copy = read_all(target, target.topic(topic))
        assert len(copy) == len(source) > 0
        run_ids = {dict(row[4])[REPLAY_HEADER] for row in copy}
        assert len(run_ids) == 1
        stripped = [(p, k, v, [h for h in hs if h[0] != REPLAY_HEADER], ts) for p, _, k, v, hs, ts in copy]
        assert stripped == [(p, k, v, hs, ts) for p, _, k, v, hs, ts in source]
    # the whole namespace was prepared for its worker
    assert read_all(target, target.topic("dlq")) == []


def test_replay_into_live_appends_tagged_copies(settings: Settings) -> None:
    now, data = _load(settings)
    result = run_cli(settings, "replay", "--source", "hotline-12345", "--from", "120m", "--to", "20m", "--yes",
                     "--no-progress")
    assert result.exit_code == 0, result.output
    rows = read_all(settings, settings.topic("raw.hotline-12345"))
    replayed = [row for row in rows if REPLAY_HEADER in dict(row[4])]
    originals = [row for row in rows if REPLAY_HEADER not in dict(row[4])]
    assert len(originals) == 12 and len(replayed) == 12
    assert sorted((r[2], r[3], r[5]) for r in replayed) == sorted((r[2], r[3], r[5]) for r in originals)


def test_a_record_the_broker_refuses_fails_the_replay(settings: Settings, other_settings: Settings) -> None:
    """A refused send is reported, not lost silently: kafka-python tells only the send's future."""
    from kafka.admin import ConfigResource, ConfigResourceType

    from gridhub.ops.common import admin_client

    now = int(time.time() * 1000)
    ensure_topics(settings, ["raw.sensors"])
    produce(settings, "raw.sensors", [{"key": b"dev-1", "value": b"x" * 4000, "timestamp": now - 30 * MIN_MS}])
    target = other_settings
    ensure_topics(target, ["raw.sensors"])
    admin = admin_client(target)
    try:  # the target topic takes at most 1,000 bytes per record batch: the 4,000-byte record is refused
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, target.topic("raw.sensors"),
                                            {"max.message.bytes": "1000"})])
    finally:
        admin.close()
    result = run_cli(settings, "replay", "--source", "sensors", "--from", "120m", "--to", "20m",
                     "--namespace", target.namespace, "--no-progress")
    assert result.exit_code != 0
    assert "replay incomplete: 1 of 1 records were not written" in result.output
    assert read_all(target, target.topic("raw.sensors")) == []
