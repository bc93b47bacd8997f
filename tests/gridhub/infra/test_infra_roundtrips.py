"""Real round trips through the servers that tests/conftest.py starts."""

from __future__ import annotations

import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from gridhub.core.codec import codec

pytestmark = pytest.mark.integration

FORWARD_APP = Path(__file__).with_name("faust_forward_app.py")


def _report(n: int) -> dict[str, Any]:
    now = int(time.time() * 1000)
    return {
        "report_id": str(uuid.uuid4()), "source": "four-platforms", "source_ref": f"EV-{n}",
        "kind": "incident", "county_code": "330502", "street_code": "330502001", "category": "road.occupation",
        "text": f"占道经营 #{n}", "reported_at": now - n, "received_at": now, "severity": 1, "version": 1,
    }


def test_avro_record_through_a_faust_agent(settings: Any, kafka_producer: Any, consume: Any, worker: Any) -> None:
    w = worker(settings, command=[sys.executable, str(FORWARD_APP)], topics=["infra.in", "infra.out"])
    reports = codec("Report")
    sent = [_report(n) for n in range(3)]
    for record in sent:
        kafka_producer.send(settings.topic("infra.in"), key=record["source_ref"].encode(),
                            value=reports.encode(record))
    kafka_producer.flush(timeout=30)

    out = consume("infra.out", 3, timeout=60)

    got = {r.key.decode(): reports.decode(r.value) for r in out}
    assert len(out) == 3, w.log_tail()
    assert set(got) == {r["source_ref"] for r in sent}
    for record in sent:
        forwarded = got[record["source_ref"]]
        assert forwarded["case_id"] == f"forwarded:{record['report_id']}"
        assert forwarded["text"] == record["text"]
        assert forwarded["reported_at"] == record["reported_at"]


def test_clickhouse_create_insert_select(settings: Any, ch_client: Any) -> None:
    ch_client.execute("CREATE TABLE probe (id UInt32, name String, at DateTime) "
                      "ENGINE = MergeTree ORDER BY id")
    ch_client.execute("INSERT INTO probe (id, name, at) VALUES",
                      [(2, "乙", 1_700_000_100), (1, "甲", 1_700_000_000)], types_check=True)
    rows = ch_client.execute("SELECT id, name, toUnixTimestamp(at) FROM probe ORDER BY id")
    assert rows == [(1, "甲", 1_700_000_000), (2, "乙", 1_700_000_100)]
    # The table lives in this test's own database, not in the contract's `gridhub`.
    assert ch_client.execute("SELECT database FROM system.tables WHERE name = 'probe'") == [(settings.ch_database,)]


def test_mqtt_publish_subscribe(settings: Any, infra: Any) -> None:
    import paho.mqtt.client as mqtt

    topic = f"{settings.namespace}/sensors/smoke/dev-1/events"
    received: list[bytes] = []
    done = threading.Event()
    subscribed = threading.Event()

    def on_message(_client: Any, _userdata: Any, msg: Any) -> None:
        received.append(msg.payload)
        done.set()

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{settings.namespace}-sub")
    sub.on_message = on_message
    sub.on_subscribe = lambda *_a: subscribed.set()
    sub.connect(settings.mqtt_host, settings.mqtt_port)
    sub.loop_start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{settings.namespace}-pub")
    pub.connect(settings.mqtt_host, settings.mqtt_port)
    pub.loop_start()
    try:
        sub.subscribe(topic, qos=1)
        assert subscribed.wait(10)
        pub.publish(topic, b'{"deviceId": "dev-1", "eventType": "alarm"}', qos=1).wait_for_publish(10)
        assert done.wait(10)
    finally:
        for client in (sub, pub):
            client.disconnect()
            client.loop_stop()
    assert received == [b'{"deviceId": "dev-1", "eventType": "alarm"}']


def test_consume_fixture_reads_the_namespaced_topic(settings: Any, kafka_producer: Any, consume: Any) -> None:
    kafka_producer.send(settings.topic("probe"), key=b"k", value=b"v1")
    kafka_producer.send("probe-outside-namespace", key=b"k", value=b"other")
    kafka_producer.flush(timeout=30)
    records = consume("probe", 1, timeout=30)
    assert [(r.topic, r.key, r.value) for r in records] == [(settings.topic("probe"), b"k", b"v1")]


def test_empty_gridhub_run_joins_kafka_and_stops_cleanly_on_sigterm(settings: Any, worker: Any) -> None:
    """`gridhub run` with no domain or service selected: a bare Faust worker against the local broker."""
    w = worker(settings, only="no-such-domain")
    assert w.running()
    assert w.stop(timeout=60) == 0
    log = w.log_text()
    assert "Worker ready" in log
    assert '"level": "error"' not in log and '"level": "critical"' not in log
