"""No MQTT message can stall sensor ingestion (issue 16): an oversized message, or one Kafka refuses
for its content, is dead-lettered as a reference (MQTT topic, size, sha256, first KiB) and
acknowledged; the messages after it still reach ``raw.sensors``.  Real Mosquitto and Kafka."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any, Callable

import pytest

from connectors.mqtt_bridge.service import MqttBridge
from gridhub.core.dlq import PREVIEW_BYTES, parse_dead_letter_headers
from gridhub.core.settings import Settings
from test_mqtt_bridge import _drop_bridge_session, event, publish, start_bridge  # noqa: F401  (autouse fixture)

pytestmark = pytest.mark.integration


def padded(device_id: str, size: int) -> bytes:
    """A well-formed sensor event of about ``size`` bytes (a platform that attaches a blob)."""
    doc = json.loads(event(device_id, 30))
    doc["blob"] = "x" * size
    return json.dumps(doc).encode()


def _reference(record: Any, payload: bytes, mqtt_topic: str) -> None:
    info = parse_dead_letter_headers(record.headers)
    assert info.stage == "mqtt" and info.extra["mqtt_topic"] == mqtt_topic
    assert info.extra["size"] == str(len(payload)) and info.extra["truncated"] == "true"
    assert info.extra["sha256"] == hashlib.sha256(payload).hexdigest()
    assert record.value == payload[:PREVIEW_BYTES]


async def _run(settings: Settings, messages: list[tuple[str, bytes]], consume: Callable[..., list[Any]]
               ) -> tuple[MqttBridge, list[Any], list[Any]]:
    bridge = await start_bridge(settings)
    try:
        await asyncio.to_thread(publish, settings.mqtt_host, settings.mqtt_port, messages)
        records = await asyncio.to_thread(consume, "raw.sensors", 1, 60)
        dead = await asyncio.to_thread(consume, "dlq", 1, 30)
        for _ in range(50):  # the acknowledgement follows the delivery
            if bridge.forwarded + bridge.dead_lettered >= len(messages):
                break
            await asyncio.sleep(0.1)
    finally:
        await bridge.stop()
    return bridge, records, dead


async def test_oversized_message_is_dead_lettered_as_a_reference(settings: Settings,
                                                                 consume: Callable[..., list[Any]]) -> None:
    big = padded("86010", 1_200_000)  # above the 900,000-byte dead-letter limit (and Kafka's 1 MB)
    bridge, records, dead = await _run(settings, [("sensors/smoke/86010/events", big),
                                                  ("sensors/smoke/86011/events", event("86011", 1))], consume)
    assert [(r.key, r.value) for r in records] == [(b"86011", event("86011", 1))]  # the feed still flows
    assert len(dead) == 1
    _reference(dead[0], big, "sensors/smoke/86010/events")
    assert (bridge.forwarded, bridge.dead_lettered) == (1, 1)


async def test_message_kafka_refuses_is_dead_lettered_not_retried(settings: Settings,
                                                                  consume: Callable[..., list[Any]]) -> None:
    """raw.sensors with max.message.bytes=20000: Kafka itself refuses a 50 kB record (MessageSizeTooLarge)."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(settings.topic("raw.sensors"), 1, 1,
                                      topic_configs={"max.message.bytes": "20000"})])
    finally:
        admin.close()
    refused = padded("86020", 50_000)
    bridge, records, dead = await _run(settings, [("sensors/smoke/86020/events", refused),
                                                  ("sensors/smoke/86021/events", event("86021", 1))], consume)
    assert [(r.key, r.value) for r in records] == [(b"86021", event("86021", 1))]
    assert len(dead) == 1
    _reference(dead[0], refused, "sensors/smoke/86020/events")
    assert "MessageSizeTooLarge" in parse_dead_letter_headers(dead[0].headers).reason
